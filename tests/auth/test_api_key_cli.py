"""`orchestrator api-keys create | list | revoke` on a running app's database (both backends)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import httpx
import pytest

from orchestrator.auth import opaque
from orchestrator.db.changelog import latest_revision
from orchestrator.services import Services
from tests.cli_runner import run_cli
from tests.support.users import make_user

pytestmark = pytest.mark.e2e


async def cli(database_url: str, *args: str) -> tuple[int, str, str]:
    result = await asyncio.to_thread(
        run_cli, "api-keys", *args, env={"ORCH_DATABASE_URL": database_url}
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


async def test_create_prints_the_key_once_list_shows_it_and_revoke_ends_it(
    database_url: str, client: httpx.AsyncClient, services: Services
) -> None:
    await make_user(services.db, "worker", "worker", password=None)
    code, out, err = await cli(
        database_url, "create", "worker", "--name", "ci runner", "--expires-days", "7"
    )
    assert code == 0, err
    key = out.strip()
    assert opaque.is_api_key(key)
    assert "shown only now" in err
    assert key not in err

    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200
    assert me.json()["username"] == "worker"

    code, out, err = await cli(database_url, "create", "worker", "--name", "reader", "--read-only")
    assert code == 0, err
    reader = out.strip()

    code, out, err = await cli(database_url, "list")
    assert code == 0, err
    assert key not in out
    assert reader not in out
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert len(rows) == 2
    (ci_id,) = [i for i, line in rows.items() if "ci runner" in line]
    assert key[:13] in rows[ci_id]
    assert "read-write" in rows[ci_id]
    (reader_id,) = [i for i, line in rows.items() if "reader" in line]
    assert "read-only" in rows[reader_id]
    expires = datetime.fromisoformat(rows[ci_id].split()[6])
    assert timedelta(days=6, hours=23) < expires - datetime.now(expires.tzinfo) <= timedelta(days=7)

    code, out, _ = await cli(database_url, "list", "WORKER")
    assert code == 0
    assert len(out.splitlines()) == 3
    code, out, _ = await cli(database_url, "list", "admin")
    assert code == 0
    assert len(out.splitlines()) == 1  # only the header

    code, out, err = await cli(database_url, "revoke", ci_id)
    assert code == 0, err
    assert ci_id in out
    assert await services.feed.wait_past(await latest_revision(services.db), within=10)
    refused = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 401
    code, out, _ = await cli(database_url, "list")
    assert ci_id not in out


async def test_refusals_are_one_line_each(database_url: str, services: Services) -> None:
    code, _, err = await cli(database_url, "create", "nobody", "--name", "x")
    assert code == 1
    assert "No user 'nobody'" in err
    for days in ("0", "731"):
        code, _, err = await cli(
            database_url, "create", "admin", "--name", "x", "--expires-days", days
        )
        assert code == 1
        assert "expires_in_days: 1 to 730" in err
    code, _, err = await cli(database_url, "create", "admin", "--name", "   ")
    assert code == 1
    assert "name: 1 to 100 characters" in err
    code, _, err = await cli(database_url, "create", "admin")
    assert code == 2  # argparse: --name is required
    code, _, err = await cli(database_url, "revoke", "00000000-0000-4000-8000-000000000000")
    assert code == 1
    assert "No such API key" in err
    code, _, err = await cli(database_url, "list", "nobody")
    assert code == 1
    assert "No user 'nobody'" in err
