"""The SDK's HTTP stack has what it looks for on every call."""

from __future__ import annotations

import importlib.util


def test_sniffio_is_installed_so_httpcore_does_not_retry_its_import_on_every_call() -> None:
    # httpcore imports sniffio inside each request to tell asyncio from trio; without it the
    # failing import (a search of sys.path) cost a fifth of a busy worker's CPU.
    assert importlib.util.find_spec("sniffio") is not None
