"""The ``genre`` command line: parses, calls the service, prints. Nothing else."""

from genre_agent.cli.main import app, main

__all__ = ["app", "main"]
