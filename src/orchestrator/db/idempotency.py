"""The idempotency-key store: the first response to a key, kept a day, written in the
transaction that creates the resource."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from orchestrator.db.changelog import Collection, record_change
from orchestrator.db.database import ConstraintViolation, Database, Transaction
from orchestrator.errors import Unprocessable

RETENTION = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """A request that carried a key: who sent it, the key, and what it asked for."""

    user_id: str
    key: str
    request_hash: str


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    resource_id: str | None
    body: bytes


class DuplicateRequest(Exception):
    """Another request with the same key committed first."""


async def stored_response(db: Database, request: IdempotentRequest) -> StoredResponse | None:
    """The response first given to this key; 422 when the key came with another request."""
    row = await db.fetch_one(
        "SELECT request_hash, status_code, resource_id, body FROM idempotency_keys "
        "WHERE user_id = :user_id AND key = :key AND created_at >= :cutoff",
        {
            "user_id": request.user_id,
            "key": request.key,
            "cutoff": datetime.now(UTC) - RETENTION,
        },
    )
    if row is None:
        return None
    if row["request_hash"] != request.request_hash:
        raise Unprocessable(
            "This Idempotency-Key was already used with a different request",
            details=[{"field": "Idempotency-Key", "reason": "reused with a different request"}],
        )
    return StoredResponse(int(row["status_code"]), row["resource_id"], row["body"].encode())


async def remember_response(
    tx: Transaction,
    *,
    request: IdempotentRequest,
    status_code: int,
    resource_id: str,
    body: bytes,
) -> None:
    """Store the response in the transaction that creates the resource.

    The primary key makes a concurrent duplicate fail here, so its resource is rolled back.
    """
    now = datetime.now(UTC)
    await tx.execute(
        "DELETE FROM idempotency_keys WHERE user_id = :user_id AND key = :key "
        "AND created_at < :cutoff",
        {"user_id": request.user_id, "key": request.key, "cutoff": now - RETENTION},
    )
    await tx.execute(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, status_code, resource_id, "
        "body, created_at) VALUES (:user_id, :key, :hash, :status, :resource_id, :body, :now)",
        {
            "user_id": request.user_id,
            "key": request.key,
            "hash": request.request_hash,
            "status": status_code,
            "resource_id": resource_id,
            "body": body.decode(),
            "now": now,
        },
    )


async def prune_idempotency_keys(db: Database) -> int:
    """Forget keys past the retention window."""
    async with db.transaction() as tx:
        pruned: int = await tx.execute(
            "DELETE FROM idempotency_keys WHERE created_at < :cutoff",
            {"cutoff": datetime.now(UTC) - RETENTION},
        )
    return pruned


class Stored(Protocol):
    """A resource as written: its id and its canonical body."""

    @property
    def id(self) -> str: ...
    @property
    def body(self) -> bytes: ...


S = TypeVar("S", bound=Stored)


class AlreadyExists(Exception):
    """The domain's own unique rule names a resource that exists: it is the answer (200), and
    nothing was created."""

    def __init__(self, resource: Stored) -> None:
        super().__init__(resource.id)
        self.resource = resource


async def create_once(
    db: Database,
    *,
    collection: Collection,
    insert: Callable[[Transaction], Awaitable[S]],
    idempotency: IdempotentRequest | None,
) -> S:
    """Run `insert` in a transaction that also keeps its response for the idempotency key
    and records the change; `DuplicateRequest` if the key won in another transaction.

    When `insert` raises AlreadyExists, that resource is kept as the key's response (200) and
    the AlreadyExists raised once the transaction commits.
    """
    existing: AlreadyExists | None = None
    try:
        async with db.transaction() as tx:
            try:
                created = await insert(tx)
            except AlreadyExists as found:
                existing = found
                if idempotency is not None:
                    await remember_response(
                        tx,
                        request=idempotency,
                        status_code=200,
                        resource_id=found.resource.id,
                        body=found.resource.body,
                    )
            else:
                if idempotency is not None:
                    await remember_response(
                        tx,
                        request=idempotency,
                        status_code=201,
                        resource_id=created.id,
                        body=created.body,
                    )
                await record_change(
                    tx,
                    collection=collection,
                    op="create",
                    resource_id=created.id,
                    data=created.body,
                )
    except ConstraintViolation:
        if idempotency is None:
            raise
        raise DuplicateRequest() from None
    if existing is not None:
        raise existing
    return created
