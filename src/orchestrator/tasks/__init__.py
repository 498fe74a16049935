"""Collaboration tasks: schemas, queries, routes."""
