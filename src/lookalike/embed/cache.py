"""An on-disk embedding cache: re-indexing skips every file that has not changed.

One SQLite database (WAL mode) holds, per embedding-model fingerprint, each
file's absolute path, size and modification time (ns), its header metadata and
its embedding. A file is reused only when path, size and mtime all match, so
an edited file is embedded again. The extractor commits each batch as it is
done, so a run killed half-way resumes from what it had embedded.

The database records its schema version; a newer one is refused with a
message to upgrade, an older or damaged one is rebuilt (it is only a cache).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.errors import CacheVersionError

SCHEMA_VERSION = 1
_CHUNK = 500  # paths per SELECT ... IN (...): under SQLite's variable limit


@dataclass(frozen=True)
class FileKey:
    """What identifies one version of a file."""

    path: str  # absolute
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike) -> FileKey | None:
        """The key of a file on disk, or None when it cannot be stat'ed."""
        try:
            absolute = os.path.abspath(path)
            stat = os.stat(absolute)
        except OSError:
            return None
        return cls(absolute, stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class CachedImage:
    vector: np.ndarray
    width: int
    height: int
    format: str


class EmbeddingCache:
    """Embeddings of one model (``fingerprint``, ``dim``) in the SQLite file at ``path``."""

    def __init__(self, path: str | os.PathLike, fingerprint: str, dim: int):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.dim = dim
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at each checkpoint, never corrupt
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else None
        except sqlite3.DatabaseError:
            db.close()
            self.path.unlink(missing_ok=True)  # a damaged cache is rebuilt, not trusted
            return self._open()
        if version is not None and version > SCHEMA_VERSION:
            db.close()
            raise CacheVersionError(
                f"the embedding cache {self.path} was written by a newer lookalike (schema {version}); "
                "upgrade lookalike or delete the cache file"
            )
        if version != SCHEMA_VERSION:
            db.executescript(
                """
                DROP TABLE IF EXISTS embeddings;
                CREATE TABLE embeddings (
                    fingerprint TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
                    mtime_ns INTEGER NOT NULL, width INTEGER, height INTEGER, format TEXT,
                    vector BLOB NOT NULL, PRIMARY KEY (fingerprint, path)
                ) WITHOUT ROWID;
                """
            )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            db.commit()
        return db

    def get(self, keys: Sequence[FileKey | None]) -> dict[int, CachedImage]:
        """Cached entries for the keys that match exactly, by position in ``keys``."""
        wanted: dict[str, list[int]] = {}
        for position, key in enumerate(keys):
            if key is not None:
                wanted.setdefault(key.path, []).append(position)
        found: dict[int, CachedImage] = {}
        paths = list(wanted)
        for start in range(0, len(paths), _CHUNK):
            chunk = paths[start : start + _CHUNK]
            rows = self._db.execute(
                "SELECT path, size, mtime_ns, width, height, format, vector FROM embeddings "
                f"WHERE fingerprint=? AND path IN ({','.join('?' * len(chunk))})",
                (self.fingerprint, *chunk),
            )
            for path, size, mtime_ns, width, height, fmt, blob in rows:
                if len(blob) != 4 * self.dim:
                    continue
                vector = np.frombuffer(blob, dtype=np.float32)
                for position in wanted[path]:
                    key = keys[position]
                    if key.size == size and key.mtime_ns == mtime_ns:
                        found[position] = CachedImage(vector, width, height, fmt)
        return found

    def put(self, entries: Iterable[tuple[FileKey, np.ndarray, int, int, str]]) -> None:
        """Store (key, vector, width, height, format) entries and commit."""
        self._db.executemany(
            "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (self.fingerprint, key.path, key.size, key.mtime_ns, width, height, fmt,
                 np.ascontiguousarray(vector, dtype=np.float32).tobytes())
                for key, vector, width, height, fmt in entries
            ],
        )  # fmt: skip
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM embeddings WHERE fingerprint=?", (self.fingerprint,)).fetchone()[
            0
        ]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
