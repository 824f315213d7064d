"""Strato's engine: dependency graph, plan, executor, state, CLI and REST API."""

__version__ = "0.1.0"
