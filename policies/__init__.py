"""Scaling and placement policies and their safe rule evaluation."""
