"""Client-side pacing: request- and token-per-minute windows, a shared cool-down, and backoff delays.

Written here because the `openai` client retries but does not pace: it has no RPM/TPM limiter, and
its retries are per request, while a 429 with Retry-After is a statement about the whole account.
So every worker acquires the limiter before a request; a 429 pauses all of them until the
Retry-After time has passed, and the retrying request then waits its own jittered backoff too.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

MAX_RETRY_AFTER_S = 600.0  # a Retry-After beyond this is treated as this (we would rather fail late)


class RateLimiter:
    """Sliding one-minute windows of requests and tokens, plus a cool-down shared by all workers.

    Tokens are reserved on `acquire` (an estimate: prompt plus max_tokens, as providers count them
    against TPM) and corrected by `settle` when the response's usage is known.
    """

    def __init__(self, rpm: int | None = None, tpm: int | None = None, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.rpm, self.tpm, self.window_s = rpm, tpm, window_s
        self._clock, self._sleep = clock, sleep
        self._entries: deque[list[float]] = deque()  # [start time, tokens, 1.0]
        self._used = 0.0  # tokens of the entries in the window
        self._cool_until = 0.0
        self._lock = asyncio.Lock()  # waiters queue up in order instead of racing for each slot

    def pause_until(self, t: float) -> None:
        self._cool_until = max(self._cool_until, t)

    def pause_for(self, seconds: float) -> None:
        self.pause_until(self._clock() + seconds)

    def _wait_needed(self, tokens: int) -> float:
        now = self._clock()
        while self._entries and self._entries[0][0] <= now - self.window_s:
            gone = self._entries.popleft()
            self._used -= gone[1]
            gone[2] = 0.0  # out of the window: settling it no longer changes the sum
        wait = max(0.0, self._cool_until - now)
        if self._entries:
            oldest_expiry = self._entries[0][0] + self.window_s - now
            if self.rpm is not None and len(self._entries) >= self.rpm:
                wait = max(wait, oldest_expiry)
            if self.tpm is not None and self._used + tokens > self.tpm:  # a lone request larger than tpm still goes
                wait = max(wait, oldest_expiry)
        return wait

    async def acquire(self, tokens: int = 0) -> list[float]:
        async with self._lock:
            while (wait := self._wait_needed(tokens)) > 0:
                await self._sleep(wait)
            entry = [self._clock(), float(tokens), 0.0]  # start time, tokens, in the window
            if self.rpm is not None or self.tpm is not None:  # without limits only the cool-down applies
                entry[2] = 1.0
                self._entries.append(entry)
                self._used += entry[1]
            return entry

    def settle(self, entry: list[float], actual_tokens: int) -> None:
        if entry[2]:  # still inside the window: correct the running sum
            self._used += actual_tokens - entry[1]
        entry[1] = float(actual_tokens)


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return min(max(float(lowered["retry-after-ms"]) / 1000, 0.0), MAX_RETRY_AFTER_S)
        if "retry-after" in lowered:
            value = lowered["retry-after"].strip()
            try:
                seconds = float(value)
            except ValueError:
                when = email.utils.parsedate_to_datetime(value).timestamp()
                seconds = when - (now if now is not None else time.time())
            return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
    except (TypeError, ValueError):
        return None
    return None


def backoff_delay(attempt: int, base_s: float, max_s: float, retry_after: float | None,
                  rng: random.Random) -> float:
    """Delay before retry number `attempt` (1 = the first retry): exponential with equal jitter, and
    never shorter than the server's Retry-After (plus up to 10% so that workers do not return at once)."""
    ceiling = min(max_s, base_s * 2 ** (attempt - 1))
    delay = rng.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after * (1 + rng.uniform(0.0, 0.1)))
    return delay
