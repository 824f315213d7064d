"""Write the corpus: each case of bases.py once per TOSCA version it is written for, under valid/ or invalid/.

    python tests/descriptors/corpus/generate.py      # rewrites valid/, invalid/ and lib/

The files are committed; the test checks that they match what this script writes.
"""

from __future__ import annotations

import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bases import CASES, LIBRARIES  # noqa: E402
from ecosystem import ECOSYSTEM, ECOSYSTEM_LIBRARIES  # noqa: E402

SHORT = {"tosca_simple_yaml_1_0": "v10", "tosca_simple_yaml_1_1": "v11", "tosca_simple_yaml_1_2": "v12",
         "tosca_simple_yaml_1_3": "v13", "tosca_simple_profile_for_nfv_1_0_0": "nfv10"}


def corpus_files() -> dict[str, str]:
    """{relative path: text} of every file of the corpus."""
    files = dict(LIBRARIES)
    files.update(ECOSYSTEM_LIBRARIES)
    for name, verdict, text, versions in CASES + ECOSYSTEM:
        assert verdict in ("valid", "invalid"), name
        for version in versions:
            files[f"{verdict}/{name}__{SHORT[version]}.yaml"] = text.replace("{V}", version)
    return files


def write(root: str = HERE) -> int:
    for sub in ("valid", "invalid", "lib"):
        shutil.rmtree(os.path.join(root, sub), ignore_errors=True)
    files = corpus_files()
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    return sum(1 for rel in files if not rel.startswith("lib/"))


if __name__ == "__main__":
    print(f"{write()} templates written under {HERE}")
