"""``/ui``: the web console, static files shipped in the package (``api/app/ui/``).

Mounted only when ``KUBEBOTS_UI`` is on (the embedded default turns it on). The page is plain
HTML, CSS and ES modules with no CDN and no build step; it talks to the chat API of the same
origin with the API key the user enters (kept in the browser's ``sessionStorage``). Every file
is sent with a strict Content-Security-Policy (scripts, styles and connections to this origin
only, no inline script, no framing), ``nosniff``, ``no-referrer``, and ``no-cache`` with an
ETag: browsers revalidate, so an upgraded runtime's console is picked up at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ...http_errors import APIError

#: The console's Content-Security-Policy: nothing but this origin, and never in a frame.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
#: The files served, by name, with their media types (anything else is a 404).
MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "render.js": "text/javascript; charset=utf-8",
    "chat.js": "text/javascript; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One console file: its bytes, media type and ETag."""

    body: bytes
    media_type: str
    etag: str

    def response(self, request: Request) -> Response:
        """The file, or ``304`` when the browser's copy (``If-None-Match``) is current."""
        headers = {
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
            "Cache-Control": "no-cache",
            "ETag": self.etag,
        }
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


def load_assets() -> dict[str, Asset]:
    """The console's files, read from the package."""
    folder = files("kubebots.runtime.api.app") / "ui"
    assets = {}
    for name, media_type in MEDIA_TYPES.items():
        body = (folder / name).read_bytes()
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        assets[name] = Asset(body, media_type, etag)
    return assets


def ui_router() -> APIRouter:
    """The console's routes, its files read once (here, when the app is created)."""
    assets = load_assets()
    router = APIRouter(tags=["console"], include_in_schema=False)

    @router.get("/ui")
    async def index(request: Request) -> Response:
        return assets["index.html"].response(request)

    @router.get("/ui/")
    async def slash() -> Response:
        return RedirectResponse("/ui", status_code=308)

    @router.get("/ui/{name}")
    async def asset(name: str, request: Request) -> Response:
        found = assets.get(name)
        if found is None or name == "index.html":
            raise APIError(f"no console file {name!r}", 404, error="NotFound")
        return found.response(request)

    return router
