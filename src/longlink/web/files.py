"""Files shipped as package data, served from memory with an ETag.

Read once, when the routes are built, so a page costs no disk read per
request; a browser re-validating with ``If-None-Match`` gets 304. Every
answer says ``nosniff`` and ``no-cache`` (re-validate: an upgraded server
serves its own files).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["StaticFile", "package_file"]

#: Media types by file extension.
MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "png": "image/png",
}


def package_file(*parts: str) -> bytes:
    """The bytes of ``longlink/web/<parts…>`` as installed with the package."""
    return resources.files("longlink.web").joinpath(*parts).read_bytes()


class StaticFile:
    """One file's bytes and the headers it is served with."""

    __slots__ = ("body", "etag", "headers", "media_type")

    def __init__(
        self, body: bytes, media_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.body = body
        self.media_type = media_type
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        self.headers = {
            "ETag": self.etag,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            **(headers or {}),
        }

    @classmethod
    def named(cls, name: str, headers: Mapping[str, str] | None = None) -> StaticFile:
        """The package file ``longlink/web/<name>`` (a ``/``-separated path)."""
        extension = name.rsplit(".", 1)[-1]
        return cls(package_file(*name.split("/")), MEDIA_TYPES[extension], headers)

    def response(self, request: Request) -> Response:
        """200 with the body, or 304 when the request already holds this version."""
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=self.headers)
        return Response(self.body, media_type=self.media_type, headers=self.headers)
