"""The tracker's gate: every request names its tenant with a bearer token, or carries a
signed link the API issued, or asks for a route configured open.

- always open: /healthz (the kubelet's liveness probe) and the player's script;
- open by configuration (REEL_TRACKER_OPEN): by default /readyz, /metrics and the API's
  own description (/docs, /openapi.json) - none of them holds a video;
- signed: the playlists, a video's event stream and its watch page, when their URL
  carries `?token=` (players and EventSource cannot send headers); the route checks the
  signature, and a refusal (403) counts as a failed attempt here;
- everything else: `Authorization: Bearer <token>` of a tenant (reel/tokens.py), whose
  name the routes read from request.state.tenant.

A client's failed attempts are limited (REEL_AUTH_FAILURES per REEL_AUTH_WINDOW_S), per
the address the connection comes from; every refusal is counted by reason.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import Counter

from reel.settings import Settings
from reel.tokens import DEV_TOKENS, FailureLimiter, Tokens, bearer

log = logging.getLogger(__name__)

AUTH_FAILURES = Counter(
    "reel_tracker_auth_failures_total",
    "Requests the tracker refused for their credentials: missing, wrong, signed (a bad or expired link), limited",
    ["reason"],
)
ALWAYS_OPEN = ("/healthz", "/player/hls.min.js", "/ui")  # the status page's files hold no data
SIGNED = re.compile(r"/videos/[^/]+/(hls/.+|events|watch)")
Next = Callable[[Request], Awaitable[Response]]


def opened(settings: Settings) -> tuple[str, ...]:
    return (*ALWAYS_OPEN, *(p.strip().rstrip("/") for p in settings.tracker_open.split(",") if p.strip()))


def is_open(path: str, open_paths: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in open_paths)


def refuse(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message}, headers=headers)


def gate(
    settings: Settings, clock: Callable[[], float] = time.monotonic
) -> Callable[[Request, Next], Awaitable[Response]]:
    tokens = Tokens.parse(settings.tenant_tokens)
    if settings.tenant_tokens == DEV_TOKENS:
        log.warning("the tracker accepts the development token: set REEL_TENANT_TOKENS")
    limiter = FailureLimiter(settings.auth_failures, settings.auth_window_s)
    open_paths = opened(settings)

    async def middleware(request: Request, call_next: Next) -> Response:
        path = request.url.path
        if is_open(path, open_paths):
            return await call_next(request)
        client = request.client.host if request.client else "unknown"
        wait = limiter.retry_after(client, clock())
        if wait > 0:
            AUTH_FAILURES.labels("limited").inc()
            return refuse(429, "too many failed attempts: wait and try again", **{"Retry-After": str(math.ceil(wait))})
        if SIGNED.fullmatch(path) and "token" in request.query_params:
            response = await call_next(request)  # the route checks the link's signature
            if response.status_code == 403:
                limiter.failed(client, clock())
                AUTH_FAILURES.labels("signed").inc()
            return response
        token = bearer(request.headers.get("authorization"))
        tenant = tokens.tenant_of(token) if token else None
        if tenant is None:
            limiter.failed(client, clock())
            AUTH_FAILURES.labels("missing" if token is None else "wrong").inc()
            what = "no bearer token" if token is None else "the bearer token is not one of a tenant's"
            return refuse(
                401, f"{what}: send Authorization: Bearer <your tenant's token>", **{"WWW-Authenticate": "Bearer"}
            )
        request.state.tenant = tenant
        return await call_next(request)

    return middleware


def tenant_of(request: Request) -> str | None:
    """The tenant a bearer token named, or None (a signed link's request)."""
    return getattr(request.state, "tenant", None)
