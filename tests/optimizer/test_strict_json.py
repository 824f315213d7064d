"""Every --json document is strict JSON: `optimizer advise` writes a refused candidate's bound as null with the
reason beside it (it wrote `Infinity`, which JSON parsers reject), and the CLI's JSON writer never emits NaN."""

import json
import math

from click.testing import CliRunner

from optimizer.cli import optimizer_group
from tests.conftest import REPO

SAMPLES = f"{REPO}/examples/optimizer/samples.csv"


def strict_loads(text: str):
    def refuse(constant):
        raise AssertionError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_advise_json_has_null_and_a_reason_for_a_refused_count(tmp_path):
    model = str(tmp_path / "m.pkl")
    runner = CliRunner()
    trained = runner.invoke(optimizer_group, ["train", "--data", SAMPLES, "--model", model,
                                                "--per-instance", "request_rate", "--json"])
    assert trained.exit_code == 0, trained.output
    strict_loads(trained.output)
    # With an upper threshold of 20, one instance would run at a load where the target was seen above it: refused.
    advised = runner.invoke(optimizer_group, ["advise", "--data", SAMPLES, "--model", model, "--low", "10",
                                              "--high", "20", "--json"])
    assert advised.exit_code == 0, advised.output
    advice = strict_loads(advised.output)
    refused = [c for c in advice["candidates"] if c["upper"] is None]
    assert refused and all("target was seen above 20" in c["refused"] for c in refused), advice["candidates"]
    assert all("refused" not in c for c in advice["candidates"] if c["upper"] is not None)
    assert advice["instances"] not in {c["instances"] for c in refused}


def test_the_cli_json_writer_never_writes_nan_or_infinity(capsys):
    from orchestrator.cli.group import emit_json
    emit_json({"p99": math.nan, "rates": [1.5, math.inf, -math.inf], "nested": {"x": float("nan")}})
    assert strict_loads(capsys.readouterr().out) == {"p99": None, "rates": [1.5, None, None], "nested": {"x": None}}
