"""Benchmark: Strato's verdict (valid / invalid) on the TOSCA test corpus against each template's expected verdict.

The corpus (tests/descriptors/corpus, written by its generate.py from hand-written bases) covers
type libraries, the Simple Profile's and the NFV profile's types, imports, inputs, requirements,
interfaces, functions, groups, policies, substitution mappings, copy and workflows, in TOSCA
1.0 to 1.3. Templates are checked as `strato validate` does from the CLI (imports unconfined).

With --compare-tosca-parser (needs `pip install -e '.[compare]'`) it also runs OpenStack's
tosca-parser on the same files and reports how often its verdict matches the expected one and
Strato's, on the whole corpus and on its held-out-style part (the `eco_` cases of
tests/descriptors/corpus/ecosystem.py: templates shaped like public TOSCA examples, written for this
corpus). The whole corpus also holds cases tosca-parser gets wrong on purpose (type cycles, unknown
keys in type libraries, duplicate keys, its crashes on valid TOSCA); descriptors/TOSCA-COMPATIBILITY.md
lists the differences. tosca-parser runs from the corpus directory, as templates of a collection are
run from its top directory.

    python benchmarks/tosca_corpus.py [--compare-tosca-parser] [--show-disagreements]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
CORPUS = os.path.join(REPO, "tests", "descriptors", "corpus")


def corpus() -> list[tuple[str, bool]]:
    """(path, expected to be valid) of every template of the corpus."""
    items = []
    for verdict in ("valid", "invalid"):
        for path in sorted(glob.glob(os.path.join(CORPUS, verdict, "*.yaml"))):
            items.append((path, verdict == "valid"))
    return items


def strato_verdict(path: str) -> tuple[bool, list[str]]:
    """(valid?, error codes) as `strato validate` reports them."""
    from orchestrator.service import validate
    result = validate([path], confined=False)[0]
    return result["ok"], [d["code"] for d in result["diagnostics"] if d.get("severity", "error") == "error"]


def tosca_parser_verdict(path: str) -> bool | None:
    """tosca-parser's verdict, or None when it is not installed."""
    try:
        from toscaparser.tosca_template import ToscaTemplate
    except ImportError:
        return None
    import logging
    logging.disable(logging.CRITICAL)
    here = os.getcwd()
    try:
        os.chdir(CORPUS)  # it reads import paths relative to the working directory first
        ToscaTemplate(path)
        return True
    except Exception:  # noqa: BLE001 - any refusal (its errors are not one class) is its 'invalid'
        return False
    finally:
        os.chdir(here)


def _held_out_style(items: list, verdicts: dict, strato: dict, show: bool) -> dict:
    """Agreement of Strato with tosca-parser on the held-out-style (eco_) templates."""
    eco = [path for path, _ in items if os.path.basename(path).startswith("eco_")]
    if not eco:
        return {}
    same = [p for p in eco if verdicts[p] == strato[p]]
    print(f"held-out-style templates (eco_*): Strato agrees with tosca-parser on {len(same)}/{len(eco)} = "
          f"{len(same) / len(eco):.1%}")
    if show:
        for p in sorted(set(eco) - set(same)):
            print(f"  differs from tosca-parser: {os.path.relpath(p, CORPUS)}: tosca-parser "
                  f"{'accepts' if verdicts[p] else 'refuses'}, Strato {'accepts' if strato[p] else 'refuses'}")
    return {"held_out_style_templates": len(eco), "held_out_style_strato_vs_tosca_parser": round(len(same) / len(eco), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare-tosca-parser", action="store_true")
    parser.add_argument("--show-disagreements", action="store_true")
    args = parser.parse_args()
    items = corpus()
    start = time.perf_counter()
    agree = internal = 0
    wrong = []
    strato = {}
    for path, expected in items:
        ok, errors = strato_verdict(path)
        strato[path] = ok
        internal += errors.count("INTERNAL_ERROR")
        if ok == expected:
            agree += 1
        else:
            wrong.append((os.path.relpath(path, CORPUS), expected, errors[:3]))
    elapsed = time.perf_counter() - start
    n = len(items)
    n_valid = sum(1 for _, e in items if e)
    print(f"corpus: {n} templates ({n_valid} valid, {n - n_valid} invalid) in {CORPUS}")
    print(f"strato agrees with the expected verdict on {agree}/{n} = {agree / n:.1%} "
          f"({elapsed:.2f} s); INTERNAL_ERROR: {internal}")
    if args.show_disagreements or wrong:
        for rel, expected, errors in wrong:
            print(f"  disagree: {rel}: expected {'valid' if expected else 'invalid'}, got "
                  f"{'valid' if not errors else ', '.join(errors)}")
    figures = {"templates": n, "valid": n_valid, "invalid": n - n_valid, "agreement": round(agree / n, 4),
               "internal_errors": internal, "seconds": round(elapsed, 2)}
    if args.compare_tosca_parser:
        verdicts = {path: tosca_parser_verdict(path) for path, _ in items}
        if any(v is None for v in verdicts.values()):
            print("tosca-parser is not installed (pip install -e '.[compare]'); no comparison")
        else:
            tp_expected = sum(1 for path, e in items if verdicts[path] == e)
            tp_strato = sum(1 for path, _ in items if verdicts[path] == strato[path])
            print(f"tosca-parser agrees with the expected verdict on {tp_expected}/{n} = {tp_expected / n:.1%}; "
                  f"with Strato on {tp_strato}/{n} = {tp_strato / n:.1%} (the whole corpus)")
            figures.update({"tosca_parser_agreement": round(tp_expected / n, 4),
                            "strato_vs_tosca_parser": round(tp_strato / n, 4)})
            figures.update(_held_out_style(items, verdicts, strato, args.show_disagreements))
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
