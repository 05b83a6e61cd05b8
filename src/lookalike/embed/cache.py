"""An on-disk embedding cache: re-indexing skips every file that has not changed.

One SQLite database (WAL mode) holds, per embedding-model fingerprint, each
file's absolute path, size and modification time (ns), its header metadata and
its embedding. A file is reused only when path, size and mtime all match, so
an edited file is embedded again. The extractor commits each batch as it is
done, so a run killed half-way resumes from what it had embedded.

The database records its schema version; a newer one is refused with a
message to upgrade, an older one is rebuilt. It is only a cache, so it never
stops a run: a damaged database (found when it is opened or when a query
meets a damaged page), or one that is not a database this version wrote (a
FIFO or a loop of links in its place, a table dropped or with other columns),
is moved aside with a warning and rebuilt; a cache that cannot be written (a
full disk, a read-only or odd path) is read where it can be and otherwise
skipped, with a warning, while indexing goes on. Nothing is opened before it
is known not to be a FIFO, which would make SQLite wait forever.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sqlite3
import stat
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.errors import CacheVersionError
from lookalike.ingest.decode import ImageInfo
from lookalike.ingest.pixel_facts import PixelFacts, facts_from_bytes, facts_to_bytes
from lookalike.store.files import file_type, set_aside

#: 2: each vector carries a CRC-32, so damage inside a stored vector is a miss, not a wrong embedding; paths
#: are the file names' bytes, so a name that is not valid UTF-8 is cached like any other. 3: each entry carries its
#: image's pixel facts (copy fingerprints, exposure, sharpness), covered by the CRC too. 4: dedup's verdicts on
#: pairs of files and its measures of single files (:mod:`lookalike.dedup.tiers`), by the files' versions.
SCHEMA_VERSION = 4
_CHUNK = 500  # paths per SELECT ... IN (...): under SQLite's variable limit
#: SQLite result codes (the low byte of extended codes) meaning the file is damaged, and meaning it cannot be written.
#: SQLITE_ERROR: one of our own statements failing means tables that are not ours (dropped, changed by hand).
_DAMAGED = {1, 11, 26}  # SQLITE_ERROR, SQLITE_CORRUPT, SQLITE_NOTADB
_UNWRITABLE = {3, 8, 10, 13, 14}  # SQLITE_PERM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN


#: The tables of the cache, as this version creates them (the columns of a database opened are checked against them).
META_TABLE = "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)"
EMBEDDINGS_TABLE = """
    CREATE TABLE embeddings (
        fingerprint TEXT NOT NULL, path BLOB NOT NULL, size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL, width INTEGER, height INTEGER, format TEXT,
        vector BLOB NOT NULL, facts BLOB NOT NULL, crc INTEGER NOT NULL,
        PRIMARY KEY (fingerprint, path)
    ) WITHOUT ROWID
"""


#: A pair's verdict, kept while both files are unchanged (``version``: the tiers' own, see TIERS_VERSION).
VERDICTS_TABLE = """
    CREATE TABLE verdicts (
        a BLOB NOT NULL, a_size INTEGER NOT NULL, a_mtime_ns INTEGER NOT NULL,
        b BLOB NOT NULL, b_size INTEGER NOT NULL, b_mtime_ns INTEGER NOT NULL,
        version INTEGER NOT NULL, verdict TEXT NOT NULL, PRIMARY KEY (a, b)
    ) WITHOUT ROWID
"""
TABLES = {"meta": META_TABLE, "embeddings": EMBEDDINGS_TABLE, "verdicts": VERDICTS_TABLE}


def default_path() -> Path:
    """The cache's database, under ``config.cache_dir()``."""
    from lookalike.config import cache_dir

    return cache_dir() / "embeddings.sqlite"


class NotOurs(Exception):
    """The cache's file is not a database this version wrote: a FIFO or a loop of links, a table dropped or changed."""


def _code(exc: sqlite3.Error) -> int:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF


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
    facts: PixelFacts | None  # None: facts of an older version, to be read off the pixels again (not re-embedded)


class EmbeddingCache:
    """Embeddings of one model (``fingerprint``, ``dim``) in the SQLite file at ``path``, and dedup's verdicts on
    pairs of files (any model: they come from the pixels).

    ``writable`` is False when entries cannot be stored (they are then only
    read, if the file could be opened at all): see the module docstring.
    """

    def __init__(self, path: str | os.PathLike, fingerprint: str = "", dim: int = 0):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.dim = dim
        self.writable = True
        self._db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._open()
        except (OSError, sqlite3.Error, NotOurs) as exc:
            self._db = self._open_read_only(exc)

    def _open(self) -> sqlite3.Connection:
        try:
            self._check_files()
            return self._connect()
        except (sqlite3.DatabaseError, NotOurs) as exc:
            if isinstance(exc, sqlite3.DatabaseError) and _code(exc) not in _DAMAGED:
                raise
            self._move_aside(exc)
            return self._connect()

    def _check_files(self) -> None:
        """Refuse, before SQLite opens them, files it would wait on forever (a FIFO) or trip over (a loop of links).

        Raises
        ------
        NotOurs
            The database is a FIFO, socket, device or loop of links (to be moved aside).
        """
        for path in (self.path, *_journals(self.path)):
            try:
                mode = os.stat(path).st_mode
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                what = "a loop of symbolic links"
            else:
                if stat.S_ISREG(mode) or stat.S_ISDIR(mode):  # a folder cannot be opened: read-only, see __init__
                    continue
                what = f"a {file_type(mode)}"
            if path != self.path:  # the journal of this database, and not one: it holds nothing of ours
                os.unlink(path)
                self._warn(f"had {what} as {path.name}: removed")
                continue
            raise NotOurs(f"it is {what}, not a database")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at each checkpoint, never corrupt
            db.execute(META_TABLE.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
            _check_tables(db, ("meta",))
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else None
            if version is not None and version > SCHEMA_VERSION:
                raise CacheVersionError(
                    f"the embedding cache {self.path} was written by a newer lookalike (schema {version}); "
                    "upgrade lookalike or delete the cache file"
                )
            if version != SCHEMA_VERSION:
                for table, create in TABLES.items():
                    if table != "meta":
                        db.execute(f"DROP TABLE IF EXISTS {table}")
                        db.execute(create)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                db.commit()
            _check_tables(db)
        except BaseException:
            db.close()
            raise
        return db

    def _open_read_only(self, cause: BaseException) -> sqlite3.Connection | None:
        """The cache for reading only, or None (no cache) when even that fails; warns either way."""
        self.writable = False
        try:
            db = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            db.execute("SELECT COUNT(*) FROM embeddings").fetchone()
        except (OSError, ValueError, sqlite3.Error):
            self._warn(f"cannot be opened ({_reason(cause)}): indexing goes on without it")
            return None
        self._warn(f"cannot be written ({_reason(cause)}): it is only read, new embeddings are not kept")
        return db

    def _move_aside(self, cause: BaseException) -> None:
        """Keep a damaged database for inspection under another name, so a fresh one takes its place."""
        if self._db is not None:
            self._db.close()
            self._db = None
        aside = set_aside(self.path)
        for journal in _journals(self.path):  # the journal belongs to the damaged file
            journal.unlink(missing_ok=True)
        self._warn(f"is damaged ({_reason(cause)}): moved to {aside.name} and rebuilt")

    def _warn(self, what: str) -> None:
        warnings.warn(f"the embedding cache {self.path} {what}", RuntimeWarning, stacklevel=4)

    def _recover(self, exc: sqlite3.Error) -> bool:
        """Deal with an error met while using the cache: True when a fresh database is ready to retry on."""
        if _code(exc) in _DAMAGED and self.writable:
            try:
                self._move_aside(exc)
                self._db = self._connect()
                return True
            except (OSError, sqlite3.Error) as again:
                self._db = self._open_read_only(again)
                return False
        if _code(exc) in _UNWRITABLE and self.writable:
            self.writable = False
            self._warn(f"cannot be written ({_reason(exc)}): new embeddings are not kept, indexing goes on")
            return False
        if _code(exc) in _DAMAGED:  # damaged and read-only: nothing in it can be trusted
            self._db.close()
            self._db = None
            self._warn(f"is damaged ({_reason(exc)}) and cannot be rebuilt here: indexing goes on without it")
            return False
        raise exc

    def _reading(self, read, *args):
        """``read(*args)`` on the database, ``{}`` when there is none or it cannot be read (see :meth:`_recover`)."""
        for _ in range(2):
            if self._db is None:
                return {}
            try:
                return read(*args)
            except sqlite3.Error as exc:
                if not self._recover(exc):
                    return {}
        return {}

    def _writing(self, statement: str, rows: list[tuple]) -> None:
        """Run ``statement`` for each of ``rows`` and commit; a no-op when the cache cannot be written."""
        for _ in range(2):
            if self._db is None or not self.writable:
                return
            try:
                self._db.executemany(statement, rows)
                self._db.commit()
                return
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.rollback()
                if not self._recover(exc):
                    return

    def get(self, keys: Sequence[FileKey | None]) -> dict[int, CachedImage]:
        """Cached entries for the keys that match exactly, by position in ``keys``; an entry whose pixel facts are of
        another version has ``facts`` None (its embedding stands: only the facts are read again)."""
        return self._reading(self._get, keys)

    def get_verdicts(self, pairs: Sequence[tuple[FileKey, FileKey]], version: int) -> dict[int, str]:
        """Verdicts (as stored by :meth:`put_verdicts`) of the pairs whose files are both unchanged, by position."""
        return self._reading(self._get_verdicts, pairs, version)

    def _get_verdicts(self, pairs: Sequence[tuple[FileKey, FileKey]], version: int) -> dict[int, str]:
        found: dict[int, str] = {}
        for start in range(0, len(pairs), _CHUNK // 2):
            chunk = pairs[start : start + _CHUNK // 2]
            where = " OR ".join(["(a=? AND b=?)"] * len(chunk))
            values = [os.fsencode(k.path) for pair in chunk for k in pair]
            rows = self._db.execute(f"SELECT * FROM verdicts WHERE version=? AND ({where})", (version, *values))
            stored = {(os.fsdecode(r[0]), r[1], r[2], os.fsdecode(r[3]), r[4], r[5]): r[7] for r in rows}
            for offset, (a, b) in enumerate(chunk):
                verdict = stored.get((a.path, a.size, a.mtime_ns, b.path, b.size, b.mtime_ns))
                if verdict is not None:
                    found[start + offset] = verdict
        return found

    def put_verdicts(self, entries: Iterable[tuple[FileKey, FileKey, str]], version: int) -> None:
        """Store each pair's verdict (any text), kept while both files are unchanged."""
        rows = [
            (os.fsencode(a.path), a.size, a.mtime_ns, os.fsencode(b.path), b.size, b.mtime_ns, version, verdict)
            for a, b, verdict in entries
        ]
        self._writing("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def _get(self, keys: Sequence[FileKey | None]) -> dict[int, CachedImage]:
        wanted: dict[str, list[int]] = {}
        for position, key in enumerate(keys):
            if key is not None:
                wanted.setdefault(key.path, []).append(position)
        found: dict[int, CachedImage] = {}
        paths = [os.fsencode(path) for path in wanted]
        for start in range(0, len(paths), _CHUNK):
            chunk = paths[start : start + _CHUNK]
            rows = self._db.execute(
                "SELECT path, size, mtime_ns, width, height, format, vector, facts, crc FROM embeddings "
                f"WHERE fingerprint=? AND path IN ({','.join('?' * len(chunk))})",
                (self.fingerprint, *chunk),
            )
            for path, size, mtime_ns, width, height, fmt, blob, stored_facts, crc in rows:
                if len(blob) != 4 * self.dim or zlib.crc32(blob + stored_facts) != crc:
                    continue  # a damaged entry is embedded again, never returned
                facts = facts_from_bytes(stored_facts)
                vector = np.frombuffer(blob, dtype=np.float32)
                for position in wanted[os.fsdecode(path)]:
                    key = keys[position]
                    if key.size == size and key.mtime_ns == mtime_ns:
                        found[position] = CachedImage(vector, width, height, fmt, facts)
        return found

    def put(self, entries: Iterable[tuple[FileKey, np.ndarray, ImageInfo, PixelFacts]]) -> None:
        """Store (key, vector, header, pixel facts) entries and commit; a no-op when the cache cannot be written."""
        rows = []
        for key, vector, info, facts in entries:
            blob, stored_facts = np.ascontiguousarray(vector, dtype=np.float32).tobytes(), facts_to_bytes(facts)
            row = (key.size, key.mtime_ns, info.width, info.height, info.format, blob, stored_facts)
            rows.append((self.fingerprint, os.fsencode(key.path), *row, zlib.crc32(blob + stored_facts)))
        self._writing("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        if self._db is None:
            return 0
        query = "SELECT COUNT(*) FROM embeddings WHERE fingerprint=?"
        return self._db.execute(query, (self.fingerprint,)).fetchone()[0]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _journals(path: Path) -> tuple[Path, Path]:
    """The files SQLite keeps beside a database in WAL mode."""
    return Path(f"{path}-wal"), Path(f"{path}-shm")


@functools.cache
def _columns_written() -> dict[str, list[tuple]]:
    """Each table's columns (name, type, not null, key) as this version creates them."""
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        for create in TABLES.values():
            db.execute(create)
        return {table: _columns(db, table) for table in TABLES}


def _columns(db: sqlite3.Connection, table: str) -> list[tuple]:
    # PRAGMA table_info rows: (position, name, type, notnull, default, primary key position).
    return [
        (name, kind.upper(), notnull, key)
        for _, name, kind, notnull, _, key in db.execute(f"PRAGMA table_info({table})")
    ]


def _check_tables(db: sqlite3.Connection, tables: Sequence[str] = tuple(TABLES)) -> None:
    """Raise :class:`NotOurs` unless ``tables`` have the columns this version writes (none dropped, none other)."""
    for table in tables:
        found, written = _columns(db, table), _columns_written()[table]
        if not found:
            raise NotOurs(f"its table {table} is missing")
        if found != written:
            names = ", ".join(column[0] for column in found)
            raise NotOurs(f"its table {table} has other columns ({names}) than lookalike writes")
