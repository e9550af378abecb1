"""Inner-product search over unit vectors with faiss: exact below a size, IVF-PQ above.

Below `exact_limit` vectors the index is `IndexFlatIP` (exact). Above, an `IndexIVFPQ` (a coarse
quantizer of `nlist` cells, product codes of `dim / 4` bytes per vector) is trained on a sample
and searched with `nprobe` cells; its `rerank` x k best candidates are re-scored exactly against
the float16 copy of the vectors kept beside it (one memory-mapped file), which restores the exact
order at the cost of 2 bytes per dimension on disk. Incremental: `add` appends; crossing the limit
rebuilds once as IVF-PQ.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ovdet.errors import FormatError, OvdetError
from ovdet.io.atomic import atomic_path, write_json


def faiss_module():
    """faiss, or a one-line error saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise OvdetError(
            "region search needs faiss: pip install 'ovdet[index]' (faiss-cpu)"
        ) from None
    return faiss


class VectorIndex:
    """Unit vectors (float16 on disk) and a faiss index over them.

    Args:
        dim: vector length.
        exact_limit: above this many vectors, IVF-PQ replaces the exact index.
        nprobe: IVF cells searched per query.
        rerank: candidates per wanted result re-scored exactly (IVF-PQ only).
    """

    def __init__(
        self, dim: int, exact_limit: int = 1_000_000, nprobe: int = 32, rerank: int = 10
    ) -> None:
        self.dim, self.exact_limit, self.nprobe, self.rerank = dim, exact_limit, nprobe, rerank
        self.vectors = np.zeros((0, dim), np.float16)
        self.index = faiss_module().IndexFlatIP(dim)

    @property
    def kind(self) -> str:
        return "flat" if self.index.__class__.__name__ == "IndexFlatIP" else "ivfpq"

    def __len__(self) -> int:
        return len(self.vectors)

    def add(self, vectors: np.ndarray) -> None:
        """Append (N, dim) vectors (normalised here)."""
        v = _unit(vectors, self.dim)
        self.vectors = np.concatenate([np.asarray(self.vectors), v.astype(np.float16)])
        if self.kind == "flat" and len(self.vectors) > self.exact_limit:
            self.index = self._train_ivfpq(np.asarray(self.vectors, np.float32))
            self.index.add(np.asarray(self.vectors, np.float32))
        else:
            self.index.add(v)

    def _train_ivfpq(self, sample_from: np.ndarray):
        faiss = faiss_module()
        nlist = int(min(4096, max(16, 4 * np.sqrt(len(sample_from)))))
        m = next(m for m in (self.dim // 4, self.dim // 8, self.dim // 2, 1) if self.dim % m == 0)
        index = faiss.IndexIVFPQ(
            faiss.IndexFlatIP(self.dim), self.dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT
        )
        rng = np.random.default_rng(0)
        take = rng.choice(len(sample_from), min(len(sample_from), 64 * nlist), replace=False)
        index.train(sample_from[np.sort(take)])
        return index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, dim) queries -> (Q, k) scores (cosine) and rows (-1 where fewer than k exist)."""
        q = _unit(queries, self.dim)
        k_eff = min(k, len(self))
        if k_eff == 0:
            return np.zeros((len(q), k), np.float32), -np.ones((len(q), k), np.int64)
        if self.kind == "flat":
            scores, rows = self.index.search(q, k_eff)
        else:
            self.index.nprobe = self.nprobe
            _, cand = self.index.search(q, min(len(self), k_eff * self.rerank))
            scores = np.full((len(q), k_eff), -np.inf, np.float32)
            rows = -np.ones((len(q), k_eff), np.int64)
            for i, c in enumerate(cand):
                c = c[c >= 0]
                exact = np.asarray(self.vectors[c], np.float32) @ q[i]
                best = np.argsort(-exact, kind="stable")[:k_eff]
                scores[i, : len(best)], rows[i, : len(best)] = exact[best], c[best]
        pad = k - k_eff
        if pad:
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
        return scores, rows

    def bytes_per_vector(self) -> dict[str, float]:
        """Memory of the faiss index and disk of the float16 copy, per vector."""
        n = max(len(self), 1)
        codes = len(faiss_module().serialize_index(self.index))
        return {"index": codes / n, "float16 copy": self.dim * 2.0}

    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> None:
        """Write the vectors and the index under names of this state's size, then `vectors.json`
        naming them (atomically: the commit point, which also holds `extra`, the caller's state
        that goes with these vectors), then remove older states' files. A kill at any point
        leaves the last committed state readable."""
        faiss, folder = faiss_module(), Path(folder)
        names = {"vectors": f"vectors.{len(self)}.npy", "index": f"vectors.{len(self)}.faiss"}
        with atomic_path(folder / names["vectors"]) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(self.vectors))
        with atomic_path(folder / names["index"]) as tmp:
            faiss.write_index(self.index, str(tmp))
        meta = {
            "dim": self.dim,
            "count": len(self),
            "kind": self.kind,
            "nprobe": self.nprobe,
            "exact_limit": self.exact_limit,
            "rerank": self.rerank,
            "files": names,
            "extra": extra or {},
        }
        write_json(folder / "vectors.json", meta)
        for old in [*folder.glob("vectors.*.npy"), *folder.glob("vectors.*.faiss")]:
            if old.name not in names.values():
                old.unlink(missing_ok=True)

    @staticmethod
    def saved_extra(folder: str | os.PathLike) -> dict | None:
        """The `extra` of the last save in `folder`, None if nothing was saved there."""
        return _meta(Path(folder))["extra"] if (Path(folder) / "vectors.json").is_file() else None

    @classmethod
    def load(cls, folder: str | os.PathLike) -> VectorIndex:
        faiss, folder = faiss_module(), Path(folder)
        meta = _meta(folder)
        try:
            out = cls(meta["dim"], meta["exact_limit"], meta["nprobe"], meta["rerank"])
            out.vectors = np.load(folder / meta["files"]["vectors"], mmap_mode="r")
            out.index = faiss.read_index(str(folder / meta["files"]["index"]))
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise FormatError(f"{folder} holds no readable region index ({e})") from None
        if len(out.vectors) != meta["count"] or out.index.ntotal != meta["count"]:
            raise FormatError(f"{folder}: the vectors and the index disagree; build it again")
        return out


def _meta(folder: Path) -> dict:
    path = folder / "vectors.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise FormatError(f"{folder} is not a region index (no vectors.json)") from None
    except ValueError as e:
        raise FormatError(f"{path} is damaged ({e}); build the index again") from None
    if not isinstance(meta, dict) or not {"count", "files", "extra"} <= meta.keys():
        raise FormatError(f"{path} is damaged (not an index's vectors.json); build it again")
    return meta


def _unit(vectors: np.ndarray, dim: int) -> np.ndarray:
    v = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(-1, dim))
    if not np.isfinite(v).all():
        raise ValueError("vectors must be finite")
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
