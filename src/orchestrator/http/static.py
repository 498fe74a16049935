"""Static files served from memory: read and compressed once, revalidated by ETag."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from orchestrator.http.etag import none_match

# Below this size gzip's header costs more than it saves.
_MIN_COMPRESSED_BYTES = 512
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether `Accept-Encoding` admits gzip (RFC 9110 §12.5.3: `q=0` refuses it)."""
    if not accept_encoding:
        return False
    for item in accept_encoding.split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        name, _, value = params.strip().partition("=")
        if name.strip().lower() != "q":
            return True
        try:
            return float(value) > 0
        except ValueError:
            return False
    return False


@dataclass(frozen=True, slots=True)
class StaticAsset:
    """One file's bytes, its gzip variant (when worth it) and a strong ETag for each."""

    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str
    gzip_etag: str

    @classmethod
    def from_bytes(cls, body: bytes, media_type: str) -> StaticAsset:
        digest = hashlib.sha256(body).hexdigest()
        gzipped: bytes | None = gzip.compress(body, compresslevel=9, mtime=0)
        if len(body) < _MIN_COMPRESSED_BYTES or len(gzipped or b"") >= len(body):
            gzipped = None
        # Each representation has its own strong validator (RFC 9110 §8.8.3).
        return cls(body, gzipped, media_type, f'"{digest}"', f'"{digest}-gzip"')

    @classmethod
    def from_file(cls, path: Path) -> StaticAsset:
        media_type = _MEDIA_TYPES.get(path.suffix) or (
            mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        )
        return cls.from_bytes(path.read_bytes(), media_type)

    def response(self, request: Request, *, headers: Mapping[str, str] | None = None) -> Response:
        """200 (gzip-encoded when the client accepts it) or 304, revalidated on every use."""
        use_gzip = self.gzipped is not None and accepts_gzip(request.headers.get("accept-encoding"))
        etag = self.gzip_etag if use_gzip else self.etag
        sent = {
            "ETag": etag,
            "Cache-Control": "no-cache",
            "Vary": "Accept-Encoding",
            **(headers or {}),
        }
        if none_match(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=sent)
        if use_gzip:
            assert self.gzipped is not None
            sent["Content-Encoding"] = "gzip"
            return Response(self.gzipped, media_type=self.media_type, headers=sent)
        return Response(self.body, media_type=self.media_type, headers=sent)


def load_assets(directory: Path, names: Mapping[str, str]) -> dict[str, StaticAsset]:
    """`{url name: asset}` for the files `names` maps to inside `directory`."""
    return {url: StaticAsset.from_file(directory / file) for url, file in names.items()}
