"""Moved to `tests.support.jobs` (as `make_jobs`); kept while other branches still import
`insert_jobs` from here."""

from tests.support.jobs import make_jobs as insert_jobs

__all__ = ["insert_jobs"]
