"""structlog JSON lines to stdout, and in development also to `.devlogs/orch-{orch_id}.log`."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import orjson
import structlog

from orchestrator.config import Settings
from orchestrator.observability.context import request_id_var

_SECRET_KEYS = frozenset(
    {"password", "token", "access_token", "authorization", "secret_key", "secret"}
)


def _add_request_id(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    request_id = request_id_var.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


def _drop_secrets(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in _SECRET_KEYS.intersection(event):
        event[key] = "[redacted]"
    return event


class _JsonLinesLogger:
    """Where our own (structlog) events go: each is already one JSON line, written to the
    handlers' streams under their locks.

    The stdlib route (a LogRecord, copied again by `ProcessorFormatter`, then the stdlib JSON
    encoder) cost several times more per line, and every request writes an access line.
    """

    def __init__(self, name: str, handlers: list[logging.StreamHandler[Any]]) -> None:
        self.name = name
        self._handlers = handlers

    def msg(self, line: bytes) -> None:
        text = line.decode() + "\n"
        for handler in self._handlers:
            with handler.lock or contextlib.nullcontext():
                handler.stream.write(text)
                handler.stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _render(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> bytes:
    return orjson.dumps(event, default=repr, option=orjson.OPT_NON_STR_KEYS)


def configure_logging(settings: Settings) -> None:
    """Render stdlib and structlog output as the same JSON lines, to the same streams."""
    level = getattr(logging, settings.log_level)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handlers: list[logging.StreamHandler[Any]] = [logging.StreamHandler(sys.stdout)]
    if settings.is_development:
        devlogs = Path(".devlogs")
        devlogs.mkdir(exist_ok=True)
        handlers.append(logging.FileHandler(devlogs / f"orch-{settings.orch_id}.log"))
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's access log prints raw request lines (including ?token=); ours replaces it.
    logging.getLogger("uvicorn.access").handlers.clear()
    logging.getLogger("uvicorn.access").propagate = False
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, _render],
        logger_factory=lambda name="orchestrator", *_: _JsonLinesLogger(name, handlers),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
