"""Logging, request context and metrics."""
