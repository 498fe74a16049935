"""Orchestrator: the coordination hub for jobs, collaboration tasks and their live change feed."""

__version__ = "0.1.0"
