"""Resumable builds of large IVF indexes: the trained index and each part filled so far are kept on disk.

Filling an IVF index with ten million vectors takes minutes; an interrupted build (a kill, a crash, a closed
laptop) starts again from the last part written, not from nothing. Parts live in the cache
(``cache_dir()/index-builds/<fingerprint>``), keyed by the vectors (their shape and a hash of rows sampled
through them), the metric, the faiss spec and faiss's version, and are removed once the index is whole.
Each part is a faiss index of :data:`PART_ROWS` vectors with their ids; the parts are merged in order, so a
resumed build holds exactly what an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from lookalike.config import cache_dir
from lookalike.store.files import atomic_path

#: Builds of at least this many vectors keep parts on disk (smaller ones take well under a minute).
CHECKPOINT_ROWS = 2_000_000
#: Vectors per part: ~1 minute of adding on 2 cores at 512-d, 130 MB of PQ128 codes.
PART_ROWS = 1_000_000
#: Rows hashed to recognise the same vectors again.
_SAMPLED_ROWS = 4096


def fingerprint(vectors: np.ndarray, metric: str, spec: str) -> str:
    """A name for this build: the same vectors, metric, spec and faiss version give the same name."""
    digest = hashlib.sha256(f"{vectors.shape}|{vectors.dtype}|{metric}|{spec}|{faiss.__version__}".encode())
    rows = np.unique(np.linspace(0, len(vectors) - 1, _SAMPLED_ROWS).astype(np.int64))
    digest.update(np.ascontiguousarray(vectors[rows]).tobytes())
    return digest.hexdigest()[:32]


class BuildCheckpoint:
    """The parts of one IVF build on disk.

    Examples
    --------
    >>> checkpoint = BuildCheckpoint.for_build(vectors, "euclidean", "IVF3162,PQ128")  # doctest: +SKIP
    >>> index = checkpoint.trained(train)  # read back when an earlier run trained it  # doctest: +SKIP
    >>> index = checkpoint.filled(index, vectors, add)  # only the parts not yet on disk  # doctest: +SKIP
    """

    def __init__(self, folder: Path, part_rows: int | None = None):
        self.folder = folder
        self.part_rows = part_rows or PART_ROWS
        #: Parts found on disk and reused by :meth:`filled` (0 for a fresh build).
        self.resumed_parts = 0

    @classmethod
    def for_build(cls, vectors: np.ndarray, metric: str, spec: str) -> BuildCheckpoint:
        return cls(cache_dir() / "index-builds" / fingerprint(vectors, metric, spec))

    def trained(self, train: Callable[[], faiss.Index]) -> faiss.Index:
        """The trained, empty index: read back if an earlier run of this build trained it, else ``train()`` it."""
        path = self.folder / "trained.faiss"
        if path.exists():
            return faiss.read_index(os.fspath(path))
        index = train()
        _write(index, path)
        return index

    def filled(
        self,
        index: faiss.Index,
        vectors: np.ndarray,
        add: Callable[[faiss.Index, np.ndarray, np.ndarray], None],
    ) -> faiss.Index:
        """``index`` (trained, empty) holding every vector with its position as id; the parts are removed after.

        ``add(part, rows, ids)`` fills one part; parts already on disk are not filled again.
        """
        starts = range(0, len(vectors), self.part_rows)
        paths = [self.folder / f"part-{number:05d}.faiss" for number in range(len(starts))]
        for start, path in zip(starts, paths, strict=True):
            if path.exists():
                self.resumed_parts += 1
                continue
            part = faiss.clone_index(index)
            rows = vectors[start : start + self.part_rows]
            add(part, rows, np.arange(start, start + len(rows), dtype=np.int64))
            _write(part, path)
        for path in paths:
            index.merge_from(faiss.read_index(os.fspath(path)), 0)  # ids kept as written
        shutil.rmtree(self.folder, ignore_errors=True)
        return index


def _write(index: faiss.Index, path: Path) -> None:
    with atomic_path(path) as partial:
        faiss.write_index(index, os.fspath(partial))
