"""`python -m orchestrator` runs the strato CLI."""

from orchestrator.cli import main

main()
