"""Region embeddings kept after a response, so /v1/requery re-scores them without a model pass
(ViLD's on-the-fly detection). Bounded: the least recently used result is dropped."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict

import torch

from ovdet.serve.limits import RequestError


class ResultStore:
    """result id -> (model name, (N, D) region embeddings in float16), at most `capacity`
    results."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[str, torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, model: str, embeddings: torch.Tensor | None) -> str | None:
        """Keep a response's embeddings; returns its id (None when it has none to keep)."""
        if embeddings is None or len(embeddings) == 0:
            return None
        key = secrets.token_urlsafe(12)
        with self._lock:
            self._items[key] = (model, embeddings.detach().cpu().half())  # half the memory
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return key

    def get(self, key: str) -> tuple[str, torch.Tensor]:
        with self._lock:
            if key not in self._items:
                raise RequestError(
                    404,
                    f"no result {key[:40]!r} kept (the server keeps the last {self.capacity}); "
                    "run /v1/detect again",
                )
            self._items.move_to_end(key)
            model, embeddings = self._items[key]
        return model, embeddings.float()
