"""The status page for people (/ui): static HTML and a little JavaScript that signs in
with a tenant's token and reads the same API a client does - the video list, each
video's status and signed event stream, its playback and download links. The page's
files hold no data, so they are open; every call they make is authorised as any other."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

UI = Path(__file__).parent / "ui"
TYPES = {"app.js": "text/javascript", "player.js": "text/javascript", "app.css": "text/css"}
# Scripts and styles only from the tracker itself (none inline); media and fragments come
# from the store's presigned URLs (another origin) and hls.js's blob: buffers.
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' http: https:; media-src 'self' blob: http: https:; worker-src blob:; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


def router() -> APIRouter:
    api = APIRouter()

    @api.get("/ui", include_in_schema=False)
    def page() -> Response:
        return FileResponse(UI / "index.html", media_type="text/html", headers=HEADERS)

    @api.get("/ui/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in TYPES:
            return Response(status_code=404)
        return FileResponse(UI / name, media_type=TYPES[name], headers=HEADERS)

    @api.get("/whoami", tags=["status"])
    def whoami(request: Request) -> dict[str, str]:
        """The tenant the bearer token names (the status page signs in with it)."""
        return {"tenant": request.state.tenant}

    return api
