"""The real-time routes: `/ws` and the SSE feed."""

from __future__ import annotations

from fastapi import APIRouter

from orchestrator.changes.sse import router as sse_router
from orchestrator.changes.ws import router as ws_router

router = APIRouter()
router.include_router(ws_router)
router.include_router(sse_router)
