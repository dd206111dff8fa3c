"""留痕: every request is recorded before its answer leaves, and consumers are held to their limits.

`AuditMiddleware` (pure ASGI) holds back the start of every response until the request's row is
committed to the access log (citylake.service_state): granted or denied, 200 or 401, token
or none. If the row cannot be written the answer is a 503, never an unrecorded 200. Endpoints
add what they know (consumer, token, resource, grant, purpose, fields, rows returned)
to `request.state.audit`; the outcome follows from the status.

`Limits` is the per-consumer token bucket (service.rate_per_s, service.burst) and daily quota
(service.daily_quota, counted per city day from the access log on first use): 429 with
Retry-After when either is spent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import threading
import time
from zoneinfo import ZoneInfo

from citylake.config import CITY_TIMEZONE, ServiceSettings
from citylake.service.resources import Denied
from citylake.service_state import Store

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
AUDIT_KEYS = (
    "consumer",
    "token_id",
    "service",
    "resource",
    "grant_id",
    "purpose",
    "fields",
    "clear_fields",
    "rows_returned",
    "reason",
)


def outcome_of(status: int) -> str:
    if status < 400:
        return "granted"
    if status in (401, 403, 429):
        return "denied"
    if status in (404, 409, 422):
        return "refused"
    return "error"


class AuditMiddleware:
    def __init__(self, app, store: Store):
        self.app = app
        self.store = store

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        audit: dict = {}
        scope.setdefault("state", {})["audit"] = audit
        held_back = False
        started = False

        def entry_of(status: int) -> dict:
            path = scope["path"]
            if scope.get("query_string"):
                path += "?" + scope["query_string"].decode("latin-1")
            client = scope.get("client")
            entry = {k: audit.get(k) for k in AUDIT_KEYS}
            return entry | {
                "method": scope["method"],
                "path": path[:2000],
                "status": status,
                "outcome": outcome_of(status),
                "client": f"{client[0]}:{client[1]}" if client else None,
            }

        async def recording_send(message):
            nonlocal held_back, started
            if held_back:
                return
            if message["type"] == "http.response.start":
                started = True
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
                try:
                    await asyncio.wrap_future(self.store.record_async(entry_of(message["status"])))
                except Exception:  # noqa: BLE001 - no answer leaves unrecorded
                    held_back = True
                    body = json.dumps(
                        {
                            "errorCode": "audit_unavailable",
                            "message": "访问无法留痕，已拒绝 (the access could not be recorded)",
                        },
                        ensure_ascii=False,
                    ).encode()
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 503,
                            "headers": [
                                (b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except Exception:
            if not started:  # the server's own 500: recorded too, then answered by Starlette
                audit.setdefault("reason", "server_error")
                await asyncio.wrap_future(self.store.record_async(entry_of(500)))
            raise


class Limits:
    """Token bucket and daily quota per consumer, in this process."""

    def __init__(self, settings: ServiceSettings, store: Store, workers: int = 1):
        # Each of `workers` processes holds its share, so together they keep the limits.
        self.rate = settings.rate_per_s / workers
        self.burst = max(1.0, settings.burst / workers)
        self.quota = max(1, settings.daily_quota // workers)
        self.workers = workers
        self.store = store
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # consumer → (tokens, at)
        self._days: dict[str, tuple[dt.date, int]] = {}  # consumer → (city day, requests)

    def _today(self) -> tuple[dt.date, dt.datetime]:
        now = dt.datetime.now(ZoneInfo(CITY_TIMEZONE))
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return now.date(), midnight.astimezone(dt.UTC)

    def needs_count(self, consumer: str) -> bool:
        return self._days.get(consumer, (None, 0))[0] != self._today()[0]

    def count_today(self, consumer: str) -> None:
        """Start the day's count from the access log (a restarted service keeps the quota)."""
        day, midnight = self._today()
        count = self.store.requests_since(consumer, midnight) // self.workers
        with self._lock:
            if self._days.get(consumer, (None, 0))[0] != day:
                self._days[consumer] = (day, count)

    def take(self, consumer: str) -> None:
        """Count one request, or Denied(429) with the seconds to wait in `retry_after`."""
        if self.needs_count(consumer):
            self.count_today(consumer)
        day, midnight = self._today()
        with self._lock:
            count = self._days[consumer][1]
            if count >= self.quota:
                tomorrow = midnight + dt.timedelta(days=1)
                wait = math.ceil((tomorrow - dt.datetime.now(dt.UTC)).total_seconds())
                raise _limited(
                    wait, f"今日配额已用完 (daily quota of {self.quota * self.workers} spent)"
                )
            now = time.monotonic()
            tokens, at = self._buckets.get(consumer, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._buckets[consumer] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.rate)
                limit = self.rate * self.workers
                raise _limited(wait, f"请求过于频繁，上限每秒 {limit:g} 次 (rate limit)")
            self._buckets[consumer] = (tokens - 1.0, now)
            self._days[consumer] = (day, count + 1)


def _limited(seconds: int, message: str) -> Denied:
    denied = Denied(429, "rate_limited", message)
    denied.retry_after = max(1, seconds)
    return denied
