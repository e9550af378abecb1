"""Who may call the API, and how often: API keys (Authorization: Bearer) on every /v1 route,
and a token bucket per client (its key, or its address without keys).

Keys are compared in constant time (`hmac.compare_digest`, against every key) and never logged:
logs and metrics name a client by `key_id`, the first 8 hex digits of the key's SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ovdet.errors import OvdetError

KEY_ENV = "OVDET_API_KEY"  # comma-separated keys
MIN_KEY_CHARS = 16


def key_id(key: str) -> str:
    """A key's name in logs and metrics: 8 hex digits of its SHA-256 (not the key)."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def read_keys(given: list[str] | None = None, files: list[str] | None = None) -> list[str]:
    """The API keys from --api-key values, $OVDET_API_KEY (comma-separated) and key files (one
    per line, # comments); each at least 16 characters (a short key is refused in one line,
    without echoing it)."""
    keys = list(given or [])
    keys += [k for k in os.environ.get(KEY_ENV, "").split(",") if k.strip()]
    for name in files or []:
        path = Path(name)
        if not path.is_file():
            raise OvdetError(f"--api-key-file {name}: no such file")
        lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
        keys += [line for line in lines if line]
    keys = [k.strip() for k in keys]
    for k in keys:
        if len(k) < MIN_KEY_CHARS:
            raise OvdetError(
                f"an API key ({key_id(k)}) has {len(k)} characters; use at least "
                f"{MIN_KEY_CHARS}, e.g. from secrets.token_urlsafe(32)"
            )
    return list(dict.fromkeys(keys))


@dataclass
class ApiKeys:
    """The accepted keys (none: the API is open)."""

    keys: list[str] = field(default_factory=list)

    def check(self, authorization: str | None) -> str | None:
        """The key id of an `Authorization: Bearer <key>` header that holds an accepted key,
        else None. Every key is compared (constant time, no early exit)."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        offered = authorization[len("Bearer ") :].strip().encode()
        found = None
        for key in self.keys:
            if hmac.compare_digest(offered, key.encode()):
                found = key
        return key_id(found) if found is not None else None


class TokenBuckets:
    """A token bucket per client: `rate` requests per second on average, bursts of `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        if not rate > 0 or burst < 1:
            raise OvdetError(f"--rate must be > 0 and --burst >= 1, got {rate} and {burst}")
        self.rate, self.burst = float(rate), int(burst)
        self._state: dict[str, tuple[float, float]] = {}  # client -> (tokens, last time)
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> float:
        """Spend one token of `client`'s bucket: 0.0 if it had one, else the seconds until it
        will (the request is then refused)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._state.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._state[client] = (tokens - 1.0, now)
                return 0.0
            self._state[client] = (tokens, now)
            return (1.0 - tokens) / self.rate


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_exposure(host: str, keys: list[str], insecure: bool) -> None:
    """Binding beyond this machine without API keys is refused unless --insecure says so."""
    if host not in LOOPBACK and not keys and not insecure:
        raise OvdetError(
            f"--host {host} makes the API reachable from other machines: give --api-key (or "
            f"${KEY_ENV}, --api-key-file), or --insecure to serve it open"
        )
