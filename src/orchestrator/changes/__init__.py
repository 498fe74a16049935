"""Real time: the hub that fans the change feed out, and its WebSocket and SSE endpoints."""
