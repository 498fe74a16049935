"""Request ids: keep a safe incoming `X-Request-ID`, otherwise make one (`Edge` echoes it)."""

from __future__ import annotations

import random
import re

from starlette.types import Scope

_SAFE = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")


def request_id_of(scope: Scope) -> str:
    """The client's `X-Request-ID` if it is safe to echo and log, else a new one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _SAFE.match(value):
                return str(value, "ascii")
            break
    # uuid4().hex's length. Not a secret, so not from the OS's CSPRNG: a system call per
    # request showed up in the profile.
    return f"{random.getrandbits(128):032x}"
