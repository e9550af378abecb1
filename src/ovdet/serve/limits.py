"""What one request may ask for, and the errors it gets when it asks for more."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Caps applied to every request before any model runs.

    Args:
        upload_bytes: largest request body (the image and the form fields together).
        pixels: largest decoded image, W x H, read from the header before decoding.
        vocabulary: most class names in one vocabulary.
        name_chars: longest class name.
        prompts: most boxes or points in one request.
        queue: requests admitted at once (running + waiting); more get 503 + Retry-After.
        workers: inference threads.
        timeout_s: a request waits at most this long for its result (504 after).
        results_kept: detections kept for /v1/requery (least recently used dropped).
    """

    upload_bytes: int = 16 * 2**20
    pixels: int = 40_000_000
    vocabulary: int = 2000
    name_chars: int = 100
    prompts: int = 256
    queue: int = 128
    workers: int = 1
    timeout_s: float = 60.0
    results_kept: int = 512

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"Limits.{name} must be > 0, got {value!r}")


class RequestError(Exception):
    """A request the server refuses: an HTTP status and one line saying why."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}
