"""A large IVF build killed half-way resumes from the parts it wrote, and ends with the same index."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from lookalike.index import approximate, checkpoint
from lookalike.index.approximate import ApproximateIndex

SPEC = "IVF64,SQ8"


def _vectors(path: Path) -> np.ndarray:
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((64, 48)).astype(np.float32)
    vectors = centres[rng.integers(0, 64, 30_000)] + 0.4 * rng.standard_normal((30_000, 48)).astype(np.float32)
    np.save(path, vectors.astype(np.float32))
    return np.load(path, mmap_mode="r")


@pytest.fixture
def small_parts(monkeypatch):
    """Checkpoint a 30,000-vector build in parts of 4,000 (the real thresholds are millions)."""
    monkeypatch.setattr(approximate, "CHECKPOINT_ROWS", 10_000)
    monkeypatch.setattr(checkpoint, "PART_ROWS", 4_000)


def test_killed_build_resumes_from_its_parts(tmp_path, monkeypatch, small_parts):
    cache = tmp_path / "cache"
    monkeypatch.setenv("LOOKALIKE_CACHE", str(cache))
    vectors = _vectors(tmp_path / "vectors.npy")
    # A real build in another process, killed (SIGKILL, no clean-up) right after writing its third part.
    script = textwrap.dedent(
        f"""
        import os, signal
        import numpy as np
        from lookalike.index import approximate, checkpoint
        approximate.CHECKPOINT_ROWS, checkpoint.PART_ROWS = 10_000, 4_000
        write, written = checkpoint._write, []
        def write_then_die(index, path):
            write(index, path)
            written.append(path)
            if sum(p.name.startswith("part-") for p in written) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        checkpoint._write = write_then_die
        approximate.ApproximateIndex(np.load({str(tmp_path / "vectors.npy")!r}, mmap_mode="r"), "euclidean", {SPEC!r})
        """
    )
    env = {**os.environ, "LOOKALIKE_CACHE": str(cache)}
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    (folder,) = (cache / "index-builds").iterdir()
    assert sorted(p.name for p in folder.glob("*.faiss")) == [
        "part-00000.faiss",
        "part-00001.faiss",
        "part-00002.faiss",
        "trained.faiss",
    ]
    assert not list(folder.glob(".*partial"))  # parts appear whole or not at all

    resumed = ApproximateIndex(vectors, "euclidean", SPEC)
    assert resumed.resumed_parts == 3
    assert not folder.exists()  # parts are removed once the index is whole

    monkeypatch.setattr(approximate, "CHECKPOINT_ROWS", 10**9)  # the same build in one go, never checkpointed
    whole = ApproximateIndex(vectors, "euclidean", SPEC)
    assert len(whole) == len(resumed) == len(vectors)
    queries = np.asarray(vectors[::97])
    for got, expected in zip(resumed.search(queries, 10, effort=4), whole.search(queries, 10, effort=4), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_other_vectors_do_not_reuse_parts(tmp_path, monkeypatch, small_parts):
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    vectors = np.array(_vectors(tmp_path / "vectors.npy"))
    changed = vectors.copy()
    changed[0] += 1.0  # a sampled row differs
    assert checkpoint.fingerprint(vectors, "euclidean", SPEC) != checkpoint.fingerprint(changed, "euclidean", SPEC)
    assert checkpoint.fingerprint(vectors, "euclidean", SPEC) != checkpoint.fingerprint(vectors, "cosine", SPEC)
    assert ApproximateIndex(vectors, "euclidean", SPEC).resumed_parts == 0
    assert ApproximateIndex(changed, "euclidean", SPEC).resumed_parts == 0
