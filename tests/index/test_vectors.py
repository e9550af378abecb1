"""The faiss layer: exact search equals brute force; IVF-PQ with exact re-ranking keeps recall@10
>= 0.95; adding in pieces equals adding at once; saved states survive a reload."""

import numpy as np
import pytest

from ovdet.errors import FormatError
from ovdet.index.vectors import VectorIndex


def clustered(n, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n // 20, dim))
    return centers[rng.integers(0, len(centers), n)] + 0.5 * rng.normal(size=(n, dim))


def brute(x, q, k):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    return np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]


def test_exact_index_equals_brute_force_and_pads_short_results():
    x, q = clustered(500), clustered(20, seed=1)
    index = VectorIndex(32)
    index.add(x[:200])
    index.add(x[200:])  # in two pieces
    scores, rows = index.search(q, 10)
    assert index.kind == "flat"
    assert (rows == brute(x, q, 10)).mean() > 0.99  # float16 copy, float32 index: ties aside
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    small = VectorIndex(32)
    small.add(x[:3])
    s, r = small.search(q[:1], 5)
    assert r[0, 3:].tolist() == [-1, -1] and np.isneginf(s[0, 3:]).all()


def test_ivfpq_above_the_limit_keeps_recall_and_survives_a_reload(tmp_path):
    x, q = clustered(6000), clustered(50, seed=2)
    index = VectorIndex(32, exact_limit=2000, nprobe=16)
    index.add(x[:1500])
    assert index.kind == "flat"
    index.add(x[1500:])  # crosses the limit: rebuilt as IVF-PQ over everything
    assert index.kind == "ivfpq" and len(index) == 6000
    _, rows = index.search(q, 10)
    truth = brute(x, q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, truth, strict=True)])
    assert recall >= 0.95, recall
    index.save(tmp_path, {"mine": 1})
    again = VectorIndex.load(tmp_path)
    assert VectorIndex.saved_extra(tmp_path) == {"mine": 1}
    assert again.kind == "ivfpq" and np.array_equal(again.search(q, 10)[1], rows)
    index.add(x[:10])
    index.save(tmp_path)  # a later state replaces the files of the earlier one
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "vectors.6010.faiss",
        "vectors.6010.npy",
        "vectors.json",
    ]


def test_damaged_or_missing_index_is_one_line(tmp_path):
    with pytest.raises(FormatError, match="not a region index"):
        VectorIndex.load(tmp_path)
    (tmp_path / "vectors.json").write_text("{")
    with pytest.raises(FormatError, match="damaged"):
        VectorIndex.load(tmp_path)
    with pytest.raises(ValueError, match="finite"):
        VectorIndex(4).add(np.array([[np.nan, 0, 0, 1]]))
