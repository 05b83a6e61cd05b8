"""The on-disk model format: whole generations behind an atomically swapped pointer, every byte checksummed, no pickle.

MODEL/
  CURRENT                {"generation": "gen-000042", "manifest_sha256": ...}: the generation to read
  gen-000042/
    manifest.json        format name + version, embedding model spec, metric, counts, index and
                         projection records, and each file's size and SHA-256 (one per 4 MiB block)
    embeddings.npy       (n, d) float32, memory-mapped on load
    references.parquet   labels (column ``__label``), paths and metadata
    failures.parquet     images that could not be embedded: source, kind, reason (and id)
    ...                  features.npy + projection_*.npy (a projection), index.faiss + index_ids.npy (an ANN index)

A save writes a new generation and flushes it to disk, then replaces CURRENT
(one rename), then removes older generations: at every instant the path holds
the old model or the new one, and a save killed at any moment leaves one of
them. Readers follow CURRENT and start again when a save moved it under them;
saves to one path take turns (a lock on its folder).

Damage is found on load. CURRENT holds the manifest's digest, the manifest
every other file's size and digests. Files up to :data:`FULL_CHECK_BYTES` are
hashed whole on every load; larger ones (memory-mapped, never read whole by a
load) by their first and last blocks and a few random ones, and whole by
:func:`verify` (``lookalike info --verify``). Only regular files inside the
generation's folder that its manifest lists are opened: never a FIFO, a
device, a link out, or a path the manifest makes up.

The layout leaves room for parts that change often: a small table (review
decisions, say) would get a new generation that hard-links the unchanged files
of the current one and carries their digests over, never rewriting the
embeddings; only that table and the manifest would be written.

Format 1 (before generations) is the flat folder: manifest.json and the files
at the top, no checksums. It still loads; saving over it writes the first
generation beside the old files, then CURRENT, then removes the old files.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import mmap
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import numpy as np

from lookalike.errors import InvalidArgument, LookalikeError, ModelFormatError, NotRegularFile, StaleModel
from lookalike.store.files import (
    fsync_dir,
    fsync_tree,
    locked,
    open_regular,
    place_dir,
    reporting_full_disk,
    staging_dir,
    write_text_atomic,
)
from lookalike.store.manifest import SIDE_FILES, Manifest, check_entries, is_int

if TYPE_CHECKING:  # pandas and pyarrow are imported where tables are read or written: describe() needs neither
    import pandas as pd

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LABEL_COLUMN",
    "Generation",
    "SavedModel",
    "check_unchanged",
    "current_generation",
    "is_model_dir",
    "is_saved_model",
    "load",
    "save",
    "verify",
]

FORMAT = "lookalike-model"
FORMAT_VERSION = 2
LABEL_COLUMN = "__label"
POINTER = "CURRENT"
MANIFEST = "manifest.json"
#: Files up to this size are hashed whole on every load (SHA-256 ran at 1-1.5 GB/s with SHA-NI on the
#: 2-core test machine: 45-65 ms for 64 MiB), and tables and small arrays are read whole anyway. Larger
#: ones are memory-mapped arrays and faiss indexes, which a load need not read whole: hashed whole on request.
FULL_CHECK_BYTES = 64 * 2**20
#: One SHA-256 digest per block of this size, so that a few blocks of a large file can be checked alone.
BLOCK_BYTES = 4 * 2**20
#: Blocks of a large file hashed on load besides its first (the header) and its last (the length).
SAMPLED_BLOCKS = 6
#: lookalike writes manifests of a few kB (33 kB of digests for 2 GB of embeddings): anything far larger is damage.
MANIFEST_LIMIT = 16 * 2**20
POINTER_LIMIT = 4096
#: Times a load starts again because saves kept replacing the model under it.
ATTEMPTS = 10
#: Bytes of an array written at once: a memory-mapped array is never copied whole into memory.
WRITE_BYTES = 16 * 2**20

_GENERATION = re.compile(r"gen-(\d{6,})\Z")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_DIGEST = re.compile(r"[0-9a-f]{64}\Z")
_NO_DIGEST = hashlib.sha256(b"").hexdigest()

T = TypeVar("T")


@dataclass(frozen=True)
class Generation:
    """Which save of a model a reader saw: the generation ``CURRENT`` names and its manifest's SHA-256
    (both None for a model in format 1, which has no generations)."""

    name: str | None
    manifest_sha256: str | None

    def __str__(self) -> str:
        return self.name or "format 1"


#: What a saved file is made from: an array (written as .npy), a table (parquet) or a function writing the file.
Content = "np.ndarray | pd.DataFrame | Callable[[Path], None]"


# ------------------------------------------------------------------------------------ reading


def _open_regular(path: Path, folder: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file directly inside ``folder`` (links are followed, but not out)."""
    real = os.path.realpath(path)
    if os.path.dirname(real) != os.path.realpath(folder):
        raise ModelFormatError(f"{path} leads outside {folder} (to {real}): a model reads only its own files")
    try:
        return open_regular(path)
    except NotRegularFile as exc:
        raise ModelFormatError(str(exc)) from None


def _read_limited(path: Path, folder: Path, limit: int) -> bytes:
    with _open_regular(path, folder) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ModelFormatError(f"{path} is damaged: it is over {limit} bytes, far more than lookalike writes")
    return data


#: Largest side file read (far above what lookalike writes: a side file is small by design).
SIDE_FILE_LIMIT = 64 * 1024 * 1024


def read_side_file(path: str | os.PathLike, name: str) -> bytes | None:
    """The side file ``name`` of the model at ``path`` (a regular file in its folder), or None when there is none."""
    folder = Path(path)
    if name not in SIDE_FILES:
        raise InvalidArgument(f"{name!r} is not a side file of a model ({SIDE_FILES})")
    if not os.path.lexists(folder / name):
        return None
    return _read_limited(folder / name, folder, SIDE_FILE_LIMIT)


def _parse_json(data: bytes, path: Path) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise ModelFormatError(f"{path} is damaged: its JSON is nested too deeply to be a lookalike file") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise ModelFormatError(f"{path} is unreadable or not JSON ({exc})") from None


def _pointer(folder: Path) -> tuple[str, str] | None:
    """(generation, manifest digest) named by ``folder/CURRENT``, or None in a format-1 model (no CURRENT)."""
    path = folder / POINTER
    try:
        data = _read_limited(path, folder, POINTER_LIMIT)
    except FileNotFoundError:
        if os.path.lexists(path):  # a link to nothing
            raise ModelFormatError(f"{path} is damaged: it is a link to a missing file") from None
        return None
    except OSError as exc:
        raise ModelFormatError(f"{path} cannot be read ({exc})") from None
    record = _parse_json(data, path)
    name = record.get("generation") if isinstance(record, dict) else None
    digest = record.get("manifest_sha256") if isinstance(record, dict) else None
    if not (isinstance(name, str) and _GENERATION.match(name) and isinstance(digest, str) and _DIGEST.match(digest)):
        raise ModelFormatError(f"{path} is damaged: it does not name a generation and its manifest's SHA-256")
    return name, digest


def is_model_dir(path: Path) -> bool:
    """Whether ``path`` holds a saved model (either format), judged from CURRENT or the manifest alone, never hanging."""
    folder = Path(path)
    try:
        pointer = _pointer(folder)
        if pointer is not None:
            return (folder / pointer[0]).is_dir()
        manifest = _parse_json(_read_limited(folder / MANIFEST, folder, MANIFEST_LIMIT), folder / MANIFEST)
    except (OSError, LookalikeError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def is_saved_model(source: Any) -> bool:
    """Whether ``source`` is the path (a ``str`` or ``os.PathLike``) of a saved model's folder.

    Anything else, a model object, a table, a list of photos, is not, and
    neither is a folder of photos: the question the fronts and the one-call
    jobs ask before they load a model or build one.

    >>> is_saved_model(["a.jpg", "b.jpg"])
    False
    """
    return isinstance(source, str | os.PathLike) and is_model_dir(Path(source))


def current_generation(path: str | os.PathLike) -> Generation:
    """The save of the model at ``path`` that a load would read now."""
    pointer = _pointer(Path(path))
    return Generation(*pointer) if pointer else Generation(None, None)


def check_unchanged(path: str | os.PathLike, loaded: Generation) -> None:
    """Raise :class:`StaleModel` when the model at ``path`` is no longer the save ``loaded`` (another process
    saved it since): a writer holding the older one would drop what the other added."""
    now = current_generation(path)
    if now != loaded:
        raise StaleModel(
            f"{path} was saved by another process since this one loaded it (generation {loaded} -> {now}): reload it"
        )


def _checked_manifest(manifest: Any, path: Path, in_generation: bool) -> dict[str, Any]:
    """``manifest`` if it is a lookalike manifest whose entries have the types the loader relies on."""
    folder = path.parent
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFormatError(f"{folder} is not a lookalike model (manifest format is not {FORMAT!r})")
    version = manifest.get("format_version")
    if not is_int(version) or version < 1:
        raise ModelFormatError(f"{path} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{folder} was saved in model format {version}, newer than this lookalike reads ({FORMAT_VERSION}): upgrade lookalike"
        )
    if "checksums" in manifest and not isinstance(manifest["checksums"], dict):
        raise ModelFormatError(f"{path} is damaged: checksums is {manifest['checksums']!r}, not an object")
    check_entries(manifest, path)
    if version >= 2 or in_generation:
        _check_checksums(manifest.get("checksums"), path)
    return manifest


def _check_checksums(checksums: Any, path: Path) -> None:
    if not isinstance(checksums, dict) or checksums.get("algorithm") != "sha256":
        raise ModelFormatError(f"{path} is damaged: it records no SHA-256 checksums of the model's files")
    block, files = checksums.get("block_bytes"), checksums.get("files")
    if not (is_int(block) and 4096 <= block <= 2**30 and isinstance(files, dict)):  # a block is read whole
        raise ModelFormatError(f"{path} is damaged: its checksums have no block size or file list")
    for name, record in files.items():
        size = record.get("bytes") if isinstance(record, dict) else None
        digests = record.get("blocks") if isinstance(record, dict) else None
        if not (
            is_int(size)
            and size >= 0
            and isinstance(digests, list)
            and len(digests) == max(1, -(-size // block))
            and all(isinstance(d, str) and _DIGEST.match(d) for d in digests)
        ):
            raise ModelFormatError(f"{path} is damaged: the checksum record of {name!r} is malformed")


def _check_file(f: BinaryIO, path: Path, record: dict[str, Any], block: int, whole: bool) -> None:
    """Compare ``f`` with the size and block digests saved for it: every block when ``whole`` or the file is
    small, else the first, the last and a few random ones."""
    size = os.fstat(f.fileno()).st_size
    if size != record["bytes"]:
        raise ModelFormatError(f"{path} is damaged: it holds {size} bytes, {record['bytes']} were saved")
    digests = record["blocks"]
    chosen: range | list[int] = range(len(digests))
    if not whole and size > FULL_CHECK_BYTES:
        middle = range(1, len(digests) - 1)
        chosen = [0, *sorted(random.sample(middle, min(SAMPLED_BLOCKS, len(middle)))), len(digests) - 1]
    for i in chosen:
        f.seek(i * block)
        if hashlib.sha256(f.read(block)).hexdigest() != digests[i]:
            end = min(size, (i + 1) * block)
            raise ModelFormatError(
                f"{path} is damaged: bytes {i * block} to {end} are not those saved (SHA-256 mismatch)"
            )
    f.seek(0)


def _mapped(f: BinaryIO, dtype: np.dtype, shape: tuple, fortran: bool, random_access: bool) -> np.ndarray:
    """The array of an ``.npy`` file, read-only and memory-mapped."""
    array = np.memmap(f, dtype=dtype, mode="r", shape=shape, order="F" if fortran else "C", offset=f.tell())
    mapped = getattr(array, "_mmap", None)  # numpy's mmap.mmap of the file (None for an empty array)
    if random_access and mapped is not None and hasattr(mapped, "madvise"):
        # Re-ranking reads a few scattered rows per query: the kernel's read-ahead would pull in ~32 pages for
        # each one, filling the page cache with rows no query asked for.
        mapped.madvise(mmap.MADV_RANDOM)
    return array


def _read_npy(f: BinaryIO, mmap: bool, random_access: bool = False) -> np.ndarray:
    if os.fstat(f.fileno()).st_size == 0:
        raise ValueError("the file is empty")
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version} is not one lookalike writes")
    if dtype.hasobject:
        raise ValueError("it holds Python objects (a pickle), which lookalike never reads")
    if mmap:
        return _mapped(f, dtype, shape, fortran, random_access)
    f.seek(0)
    return np.lib.format.read_array(f, allow_pickle=False)


class SavedModel:
    """One saved model opened for reading: its manifest, and checked access to its files.

    ``folder`` is the generation's folder (the model's own folder in format 1).
    A file is opened only if it is a regular file inside ``folder``, listed
    by the manifest when it records checksums, with the size and digests
    saved for it: every block when ``whole`` or the file is at most
    :data:`FULL_CHECK_BYTES`, else the first, the last and a few random ones.
    Anything wrong raises :class:`ModelFormatError` naming the file and why.
    """

    def __init__(
        self, folder: Path, manifest: dict[str, Any], whole: bool = False, generation: Generation | None = None
    ):
        self.folder = folder
        self.manifest = manifest
        self.whole = whole
        self.generation = generation or Generation(None, None)  # the save this is: what a later save checks
        self._checksums = manifest.get("checksums")
        self._checked: set[str] = set()

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST

    def open(self, name: str) -> BinaryIO:
        """The file ``name`` of the model, opened for reading once it passed its checks."""
        if not isinstance(name, str) or not _NAME.match(name) or name == MANIFEST:
            raise ModelFormatError(f"{self.manifest_path} names the file {name!r}: a model reads only its own files")
        path = self.folder / name
        if self._checksums is not None and name not in self._checksums["files"]:
            raise ModelFormatError(f"{self.folder} is damaged: {name} is not among the files its manifest lists")
        try:
            f = _open_regular(path, self.folder)
        except FileNotFoundError:
            raise ModelFormatError(f"{self.folder} is damaged: missing {name}") from None
        except OSError as exc:
            raise ModelFormatError(f"{path} cannot be read ({exc})") from None
        try:
            if self._checksums is not None and name not in self._checked:
                _check_file(f, path, self._checksums["files"][name], self._checksums["block_bytes"], self.whole)
                self._checked.add(name)
        except BaseException:
            f.close()
            raise
        return f

    def array(self, name: str, mmap: bool = False, random_access: bool = False) -> np.ndarray:
        """The ``.npy`` file ``name`` (memory-mapped, read-only, with ``mmap``; read a few rows at a time with
        ``random_access``); never a pickle."""
        with self.open(name) as f:
            try:
                return _read_npy(f, mmap, random_access)
            except (OSError, ValueError) as exc:
                raise ModelFormatError(f"{self.folder / name} is damaged: {exc}") from None

    def table(self, name: str) -> pd.DataFrame:
        """The parquet file ``name``, its columns of file names that are not UTF-8 restored from their bytes."""
        import pandas as pd
        import pyarrow as pa

        from lookalike.ingest.names import restored

        byte_columns = (self.manifest.get("byte_columns") or {}).get(name) or []
        if not isinstance(byte_columns, list) or not all(isinstance(c, str) for c in byte_columns):
            raise ModelFormatError(f"{self.folder}/manifest.json has an invalid byte_columns entry for {name}")
        with self.open(name) as f:
            try:
                # Without Arrow's thread pool: a command that read a table with it and then exited has been seen
                # to abort in Arrow's pool teardown ("terminate called without an active exception", apache/arrow
                # #34314); the table is read once per load, and one thread decodes it in a fraction of the load.
                return restored(pd.read_parquet(f, use_threads=False, pre_buffer=False), byte_columns)
            except (OSError, ValueError, pa.ArrowException) as exc:
                raise ModelFormatError(f"{self.folder / name} is damaged: {exc}") from None

    def path(self, name: str) -> Path:
        """The path of the file ``name`` once it passed its checks, for readers that open files themselves (faiss)."""
        self.open(name).close()
        return self.folder / name

    def contents(self) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
        """(embeddings (memory-mapped), references, failures), checked against each other and the manifest."""
        # An approximate index reads scattered rows to re-rank; exact search reads them all, in order.
        scattered = Manifest.read(self.manifest, self.manifest_path).method != "brute_force"
        embeddings = self.check_embeddings(self.array("embeddings.npy", mmap=True, random_access=scattered))
        references = self.table("references.parquet")
        failures = self.table("failures.parquet")
        if len(references) != len(embeddings) or LABEL_COLUMN not in references.columns:
            raise ModelFormatError(f"{self.folder} is damaged: references.parquet does not match embeddings.npy")
        from lookalike.ingest.report import with_kinds

        return embeddings, references, with_kinds(failures)

    def check_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """``embeddings`` (of ``embeddings.npy``) if they are the float32 (count, dim) array the manifest says."""
        manifest = Manifest.read(self.manifest, self.manifest_path)
        count, dim = manifest.count, manifest.dim
        if embeddings.dtype != np.float32 or embeddings.ndim != 2 or embeddings.shape != (count, dim):
            raise ModelFormatError(
                f"{self.folder} is damaged: embeddings.npy is {embeddings.dtype} {embeddings.shape}, manifest says float32 ({count}, {dim})"
            )
        return embeddings

    def listed_files(self) -> list[str]:
        """The names of the files the manifest's checksums list (none in format 1)."""
        return list((self._checksums or {}).get("files", {}))

    def verify(self) -> dict[str, Any]:
        """Check every file the manifest lists: ``{"format_version", "folder", "files", "bytes"}`` (no files in format 1)."""
        listed = (self._checksums or {}).get("files", {})
        for name in listed:
            self.open(name).close()
        return {
            "format_version": self.manifest["format_version"],
            "folder": str(self.folder),
            "files": len(listed),
            "bytes": sum(record["bytes"] for record in listed.values()),
        }


def _open(folder: Path, pointer: tuple[str, str] | None, whole: bool) -> SavedModel:
    if pointer is None:
        generation, digest = folder, None
    else:
        generation, digest = folder / pointer[0], pointer[1]
        if os.path.dirname(os.path.realpath(generation)) != os.path.realpath(folder):
            raise ModelFormatError(f"{generation} leads outside {folder}: a model reads only its own files")
        if not generation.is_dir():
            raise ModelFormatError(f"{folder} is damaged: {POINTER} names {pointer[0]}, which is missing")
    path = generation / MANIFEST
    try:
        data = _read_limited(path, generation, MANIFEST_LIMIT)
    except FileNotFoundError:
        if pointer is None:
            raise ModelFormatError(f"{folder} is not a lookalike model: manifest.json is missing") from None
        raise ModelFormatError(f"{generation} is damaged: manifest.json is missing") from None
    except OSError as exc:
        raise ModelFormatError(f"{path} cannot be read ({exc})") from None
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise ModelFormatError(f"{path} is damaged: its SHA-256 is not the one {POINTER} recorded")
    manifest = _checked_manifest(_parse_json(data, path), path, in_generation=pointer is not None)
    return SavedModel(generation, manifest, whole, Generation(*pointer) if pointer else Generation(None, None))


def _unchanged(folder: Path, pointer: tuple[str, str] | None) -> bool:
    try:
        return _pointer(folder) == pointer
    except (OSError, LookalikeError):
        return True


def load(path: str | os.PathLike, read: Callable[[SavedModel], T], whole: bool = False) -> T:
    """``read(saved)`` on the model at ``path``; started again when a save replaced the model meanwhile.

    ``read`` builds what it wants from the :class:`SavedModel`; a save that
    finishes while it runs removes the files it reads, and the load then
    starts over on the new generation (up to :data:`ATTEMPTS` times).
    ``whole`` hashes every block of every file read.

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    ModelFormatError
        ``path`` is not a lookalike model, is damaged, or is from a newer lookalike.
    """
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"no saved model at {folder}")
    if not folder.is_dir():
        raise ModelFormatError(f"{folder} is not a lookalike model (a model is a directory with manifest.json)")
    for attempt in itertools.count(1):
        pointer = _pointer(folder)
        try:
            return read(_open(folder, pointer, whole))
        except (LookalikeError, OSError):
            if attempt >= ATTEMPTS or _unchanged(folder, pointer):
                raise


def read_model_manifest(path: str | os.PathLike) -> Manifest:
    """The checked manifest of the model at ``path`` (what it is, its counts and records), reading no other file."""
    return load(path, lambda saved: Manifest.read(saved.manifest, saved.manifest_path))


def verify(path: str | os.PathLike) -> dict[str, Any]:
    """Hash every byte of the model at ``path`` against its checksums (``lookalike info --verify``).

    Returns ``{"format_version", "folder", "files", "bytes"}``: what was
    checked (no files for a format-1 model, which has no checksums).

    Raises
    ------
    ModelFormatError
        A file is missing, changed or damaged; the message names it.
    """
    return load(path, SavedModel.verify, whole=True)


# ------------------------------------------------------------------------------------ writing


def _write_npy(path: Path, array: np.ndarray) -> None:
    """``array`` as a ``.npy`` file, written in blocks through Python's files, whose errors carry their errno
    (numpy's own writer reports a full disk as "327680 requested and 262112 written")."""
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False, "shape": array.shape}
    rows = max(1, WRITE_BYTES // max(1, array[:1].nbytes))
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for start in range(0, len(array), rows):
            f.write(np.ascontiguousarray(array[start : start + rows]).data)


def _write(path: Path, content: Content) -> None:
    import pandas as pd
    import pyarrow as pa

    if isinstance(content, np.ndarray):
        _write_npy(path, content)
    elif isinstance(content, pd.DataFrame):
        try:
            content.to_parquet(path, index=False)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"cannot save the reference table (labels and metadata must be plain values): {exc}"
            ) from None
    else:
        content(path)  # a large faiss index writes itself, never held twice in memory


def _digests(path: Path, block: int) -> dict[str, Any]:
    digests, size = [], 0
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digests.append(hashlib.sha256(chunk).hexdigest())
            size += len(chunk)
    return {"bytes": size, "blocks": digests or [_NO_DIGEST]}


def _write_generation(folder: Path, manifest: dict[str, Any], contents: dict[str, Content]) -> str:
    """Write one generation into the new ``folder`` and flush it to disk; the SHA-256 of its manifest."""
    folder.mkdir()
    for name, content in contents.items():
        _write(folder / name, content)
    checksums = {
        "algorithm": "sha256",
        "block_bytes": BLOCK_BYTES,
        "files": {name: _digests(folder / name, BLOCK_BYTES) for name in contents},
    }
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest, "checksums": checksums}
    text = json.dumps(full, indent=2, default=str).encode()
    (folder / MANIFEST).write_bytes(text)
    fsync_tree(folder)
    fsync_dir(folder.parent)
    return hashlib.sha256(text).hexdigest()


def _point(folder: Path, generation: str, digest: str) -> None:
    write_text_atomic(folder / POINTER, json.dumps({"generation": generation, "manifest_sha256": digest}) + "\n")


def _generation_name(number: int) -> str:
    return f"gen-{number:06d}"


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def _remove_leftovers(target: Path) -> None:
    """Remove the hidden ``.saving-``/``.old-`` folders interrupted saves left beside ``target`` (unless in use)."""
    for kind in ("saving", "old"):
        for entry in target.parent.glob(f"{glob.escape(f'.{target.name}.{kind}-')}*"):
            if not entry.is_dir() or entry.is_symlink():
                continue
            try:
                with locked(entry, wait=False) as free:
                    if free:
                        shutil.rmtree(entry, ignore_errors=True)
            except FileNotFoundError:  # its own save just moved or removed it
                continue


def save(
    path: str | os.PathLike,
    manifest: dict[str, Any],
    embeddings: np.ndarray,
    references: pd.DataFrame,
    failures: pd.DataFrame,
    extra_files: dict[str, Content] | None = None,
    expected: Generation | None = None,
) -> Generation:
    """Write a model: readers see the old model or the new one at every instant, never half, never nothing.

    ``extra_files`` maps file names to arrays (written as ``.npy``) or to
    functions writing the file at the path they are given. An existing
    ``path`` is replaced only if it is itself a lookalike model (or an empty
    folder), so a typo cannot wipe out someone's photos. A save that fails
    leaves the old model and nothing else; one that runs out of space raises
    :class:`~lookalike.errors.DiskFull` naming ``path``.

    ``expected`` is the save of ``path`` the writer loaded: if another process saved the model since,
    :class:`~lookalike.errors.StaleModel` is raised and nothing is written (checked under the folder's lock).
    None (a model made afresh, replacing whatever is there) checks nothing. Returns the generation written.
    """
    from lookalike.ingest.names import storable

    target = Path(path)
    # Parquet strings are UTF-8: file names that are not are stored as their exact bytes, and said so.
    (references, reference_bytes), (failures, failure_bytes) = storable(references), storable(failures)
    byte_columns = {"references.parquet": reference_bytes, "failures.parquet": failure_bytes}
    if any(byte_columns.values()):
        manifest = {**manifest, "byte_columns": {name: cols for name, cols in byte_columns.items() if cols}}
    contents: dict[str, Content] = {
        "embeddings.npy": np.asarray(embeddings, dtype=np.float32),
        "references.parquet": references,
        "failures.parquet": failures,
        **(extra_files or {}),
    }
    fresh = not target.exists() or (target.is_dir() and not any(target.iterdir()))
    if not fresh and not is_model_dir(target):
        raise FileExistsError(f"{target} exists and is not a lookalike model; refusing to overwrite it")
    with reporting_full_disk(target):
        written = _save_fresh(target, manifest, contents) if fresh else None
        if written is None:
            written = _save_over(target, manifest, contents, expected)
    _remove_leftovers(target)
    return written


def _save_fresh(target: Path, manifest: dict[str, Any], contents: dict[str, Content]) -> Generation | None:
    """Build the model beside ``target`` and rename it into place whole; None if another save put one there first."""
    with staging_dir(target) as staging:
        name = _generation_name(1)
        digest = _write_generation(staging / name, manifest, contents)
        _point(staging, name, digest)
        try:
            place_dir(staging, target)
        except OSError:
            if is_model_dir(target):
                return None
            raise
    return Generation(name, digest)


def _save_over(
    target: Path, manifest: dict[str, Any], contents: dict[str, Content], expected: Generation | None
) -> Generation:
    """Add a generation to the model at ``target``, point CURRENT at it, then remove everything else."""
    with locked(target):
        if not is_model_dir(target):  # checked again now that other saves wait
            raise FileExistsError(f"{target} exists and is not a lookalike model; refusing to overwrite it")
        if expected is not None:
            check_unchanged(target, expected)
        pointer = _pointer(target)
        current = pointer[0] if pointer else None
        numbers = [int(m.group(1)) for e in target.iterdir() if (m := _GENERATION.match(e.name))]
        for entry in target.iterdir():  # interrupted saves' generations and temporary files: free their space first
            if entry.name != current and (_GENERATION.match(entry.name) or entry.name.startswith(".")):
                _remove(entry)
        name = _generation_name(max(numbers, default=0) + 1)
        try:
            digest = _write_generation(target / name, manifest, contents)
            _point(target, name, digest)
        except BaseException:
            if _unchanged(target, pointer):  # never remove what CURRENT already names
                shutil.rmtree(target / name, ignore_errors=True)
            raise
        for entry in target.iterdir():  # older generations, and a format-1 model's files
            if entry.name not in (POINTER, name, *SIDE_FILES):
                _remove(entry)
    return Generation(name, digest)
