"""`import orchestrator.cli` and `strato validate` stay light: no numpy, scikit-learn, scipy, cloud SDKs or networkx."""

import json
import subprocess
import sys

from tests.conftest import REPO

HEAVY = ("numpy", "sklearn", "scipy", "boto3", "botocore", "openstack", "fastapi", "matplotlib", "networkx")

PROBE = """
import json, sys
import orchestrator.cli
after_import = sorted(m for m in {heavy!r} if m in sys.modules)
from click.testing import CliRunner
results = [CliRunner().invoke(orchestrator.cli.main, ["validate", f]).exit_code for f in sys.argv[1:]]
print(json.dumps({{"after_import": after_import, "codes": results,
                  "after_validate": sorted(m for m in {heavy!r} if m in sys.modules)}}))
"""


def test_cli_import_and_validate_leave_heavy_libraries_unloaded():
    files = [f"{REPO}/examples/ai-inference/service.yaml", f"{REPO}/examples/hybrid-ai/service.yaml"]
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *files], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["codes"] == [0, 0]
    assert data["after_import"] == [], data
    assert data["after_validate"] == [], data
