"""The README's optimizer commands run as written, on the sample set the project ships and can regenerate."""

import os
import re
import shlex
import shutil
import subprocess
import sys

from tests.conftest import REPO

README = os.path.join(REPO, "README.md")
SAMPLES = os.path.join(REPO, "examples", "optimizer", "samples.csv")


def readme_optimizer_commands() -> list[list[str]]:
    with open(README, encoding="utf-8") as fh:
        lines = [re.sub(r"\s+#.*$", "", line).strip() for line in fh if line.startswith("strato optimizer ") and "--data" in line]
    return [shlex.split(line) for line in lines]


def test_readme_optimizer_commands_run_as_written(tmp_path):
    commands = readme_optimizer_commands()
    assert [c[2] for c in commands] == ["train", "advise"]
    data = {c[c.index("--data") + 1] for c in commands}
    assert data == {"examples/optimizer/samples.csv"} and os.path.isfile(SAMPLES)
    # run where a user would (a checkout), but in a copy so the model file lands in tmp_path
    os.makedirs(tmp_path / "examples" / "optimizer")
    shutil.copy(SAMPLES, tmp_path / "examples" / "optimizer" / "samples.csv")
    env = dict(os.environ, PYTHONPATH=REPO)
    for argv in commands:
        proc = subprocess.run([sys.executable, "-m", "orchestrator", *argv[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{' '.join(argv)}:\n{proc.stdout}\n{proc.stderr}"
    assert '"instances"' in proc.stdout


def test_shipped_samples_are_what_the_generator_writes(tmp_path):
    from optimizer.make_samples import make_samples
    from optimizer.samples import write_csv
    write_csv(make_samples(), tmp_path / "samples.csv")
    with open(SAMPLES, encoding="utf-8") as fh:
        assert fh.read() == (tmp_path / "samples.csv").read_text(), "regenerate: python -m optimizer.make_samples"
