"""Print Strato's runtime requirements (install_requires plus the named extras) from setup.cfg, one per line.

The Containerfile installs these in a layer of their own, before the source is copied, so that layer stays
cached until setup.cfg changes. Usage: python requirements.py SETUP_CFG [EXTRA,EXTRA...]
"""
import configparser
import sys


def requirements(setup_cfg: str, extras: list[str]) -> list[str]:
    parser = configparser.ConfigParser()
    if not parser.read(setup_cfg):
        raise SystemExit(f"requirements.py: cannot read {setup_cfg}")
    blocks = [parser.get("options", "install_requires", fallback="")]
    for extra in extras:
        if not parser.has_option("options.extras_require", extra):
            raise SystemExit(f"requirements.py: setup.cfg has no extra named {extra!r}")
        blocks.append(parser.get("options.extras_require", extra))
    lines = (line.split("#", 1)[0].strip() for block in blocks for line in block.splitlines())
    return list(dict.fromkeys(line for line in lines if line))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__.strip().splitlines()[-1])
    chosen = [e for e in (sys.argv[2] if len(sys.argv) == 3 else "").split(",") if e]
    print("\n".join(requirements(sys.argv[1], chosen)))
