"""RFC 9110 conditional requests: `If-Match` and `If-None-Match` against our ETags."""

from __future__ import annotations

from orchestrator.errors import PreconditionFailed, PreconditionRequired

# Longer header values are not tags we ever issued; treat them as matching nothing.
MAX_CONDITION_HEADER = 8 * 1024


def _parse_tags(header: str) -> tuple[bool, list[tuple[bool, str]]]:
    """(`*` given, [(weak, opaque-tag)]) from an If-Match / If-None-Match value."""
    if len(header) > MAX_CONDITION_HEADER:
        return False, []
    if header.strip() == "*":
        return True, []
    tags: list[tuple[bool, str]] = []
    for raw in header.split(","):
        item = raw.strip()
        weak = item.startswith("W/")
        if weak:
            item = item[2:]
        if len(item) >= 2 and item[0] == '"' and item[-1] == '"':
            tags.append((weak, item))
    return False, tags


def none_match(header: str | None, etag: str) -> bool:
    """True when `If-None-Match` matches `etag` (weak comparison): answer 304."""
    if header is None:
        return False
    if header == etag:  # what a client that cached the response sends back
        return True
    star, tags = _parse_tags(header)
    return star or any(tag == etag for _weak, tag in tags)


def require_match(header: str | None, current_etag: str) -> None:
    """Enforce `If-Match` with strong comparison before a write."""
    if header is None:
        raise PreconditionRequired()
    star, tags = _parse_tags(header)
    if star or any(not weak and tag == current_etag for weak, tag in tags):
        return
    raise PreconditionFailed(
        "The resource has changed; fetch it again", headers={"ETag": current_etag}
    )


def if_match_version(header: str | None) -> tuple[bool, list[str]]:
    """(`*` given, strong tags) of an `If-Match`, for writes checked by the database."""
    if header is None:
        raise PreconditionRequired()
    star, tags = _parse_tags(header)
    return star, [tag for weak, tag in tags if not weak]
