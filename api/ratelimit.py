"""Attempts per client, for the doors a guesser would knock on: console login and SSO verify.

A sliding window in this process's memory, keyed by the client address the server sees (behind
a reverse proxy, that is the proxy: let it pass the client's address, e.g. uvicorn's
--proxy-headers with --forwarded-allow-ips). Each API process counts on its own, so N processes
allow N times the budget; that still turns a guessing attack from fast into slow.
"""

from __future__ import annotations

import math
import time
from collections import deque

from fastapi import Request

from domain.errors import BizError

DEFAULT_ATTEMPTS = 10
DEFAULT_WINDOW_SECONDS = 60.0
_MAX_CLIENTS = 10_000  # memory bound: the oldest clients are forgotten first


class RateLimit:
    def __init__(
        self, attempts: int = DEFAULT_ATTEMPTS, window: float = DEFAULT_WINDOW_SECONDS
    ) -> None:
        self.attempts = attempts
        self.window = window
        self._seen: dict[str, deque[float]] = {}

    def check(self, request: Request) -> None:
        """Count one attempt by the request's client; RATE_LIMITED (429) past the budget."""
        client = request.client.host if request.client else "unknown"
        now = time.monotonic()
        seen = self._seen.pop(client, None) or deque()
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        self._seen[client] = seen  # most recently seen last
        if len(seen) >= self.attempts:
            retry_after = max(1, math.ceil(seen[0] + self.window - now))
            raise BizError("RATE_LIMITED", retry_after=retry_after)
        seen.append(now)
        while len(self._seen) > _MAX_CLIENTS:
            del self._seen[next(iter(self._seen))]


def rate_limit_of(request: Request) -> RateLimit:
    limit: RateLimit = request.app.state.rate_limit
    return limit
