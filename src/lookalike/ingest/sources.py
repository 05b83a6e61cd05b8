"""Find images: folders, globs, files, lists of paths or URLs, and tables (CSV, TSV, parquet, DataFrames).

Only file headers are read here (size, format): no pixels are decoded, so
listing a large collection is fast and its memory does not grow with image
size. URLs are downloaded first, into the download cache (:mod:`.download`).
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lookalike.errors import Failure, ImageError, InvalidArgument
from lookalike.ingest.columns import find_feature_column
from lookalike.ingest.decode import probe, source_name
from lookalike.ingest.download import DownloadSettings, localize, url_scheme
from lookalike.ingest.names import text_column
from lookalike.ingest.report import failure_record

#: File extensions taken as images when walking a folder (compared lower-case).
IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".gif",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".heic",
        ".heif",
        ".avif",
        ".ico",
        ".tga",
    }
)

#: Table files taken as lists of images (one row an image), by extension.
TABLE_EXTENSIONS = frozenset({".csv", ".tsv", ".parquet", ".pq", ".txt"})

_PROBE_THREADS = 8
_HEADER_COLUMNS = {
    "width": "int64",
    "height": "int64",
    "format": object,
    "bytes": "int64",
    "mtime": "float64",
}  # header reads are mostly I/O waits: more threads than cores pay off


def list_image_files(url: str | os.PathLike | Sequence[str | os.PathLike], recursive: bool = True) -> list[Path]:
    """Expand a folder, glob pattern, file, or list of those into image file paths.

    Folders are walked (recursively by default) for files with an image
    extension; explicitly named files are kept whatever their extension.
    The result is sorted, so the same input always gives the same order.
    """
    if isinstance(url, (str, os.PathLike)):
        sources: Iterable[str | os.PathLike] = [url]
    else:
        sources = url
    files: list[Path] = []
    for source in sources:
        path = Path(check_named(source))
        if path.is_dir():
            files.extend(_walk(path, recursive))
        elif path.exists():
            if path.suffix.lower() in TABLE_EXTENSIONS:
                raise InvalidArgument(f"{source} is a table of images: pass it alone, not in a list with other sources")
            files.append(path)
        elif glob.has_magic(str(source)):
            for match in sorted(glob.glob(str(source), recursive=recursive)):
                match_path = Path(match)
                files.extend(_walk(match_path, recursive) if match_path.is_dir() else [match_path])
        else:
            raise FileNotFoundError(f"no such file or folder: {source}")
    return files


def check_named(source: str | os.PathLike) -> str | os.PathLike:
    """``source``, refused if it is an empty path: ``Path("")`` means the current folder, which nobody meant."""
    if not os.fspath(source).strip():
        raise InvalidArgument(
            f"an empty path ({os.fspath(source)!r}) names no file or folder; for the current folder, pass '.'"
        )
    return source


def _walk(folder: Path, recursive: bool) -> list[Path]:
    found = []
    if recursive:
        unreadable: list[OSError] = []
        for root, dirs, names in os.walk(folder, onerror=unreadable.append):
            dirs.sort()
            found.extend(Path(root) / n for n in sorted(names) if Path(n).suffix.lower() in IMAGE_EXTENSIONS)
        for error in unreadable:  # os.walk skips them silently: say which images are left out, and why
            reason = error.strerror or type(error).__name__
            warnings.warn(
                f"folder {source_name(error.filename)} cannot be read ({reason}): its images are left out",
                RuntimeWarning,
                stacklevel=4,
            )
    else:
        found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return found


def is_embeddings_file(source: Any) -> bool:
    """True for a path (not a URL) ending in ``.npy``: precomputed embeddings, memory-mapped by ``create``."""
    return (
        isinstance(source, (str, os.PathLike))
        and url_scheme(os.fspath(source)) is None
        and Path(source).suffix.lower() == ".npy"
    )


def is_table_file(source: Any) -> bool:
    """True for a path (not a URL) ending in a table extension: .csv, .tsv, .parquet, .pq or .txt."""
    return (
        isinstance(source, (str, os.PathLike))
        and url_scheme(os.fspath(source)) is None
        and Path(source).suffix.lower() in TABLE_EXTENSIONS
    )


def read_table(path: str | os.PathLike, text_columns: Iterable[str | None] = ()) -> pd.DataFrame:
    """Read a table of images: CSV, TSV, parquet, or a .txt list (one path or URL a line, column ``path``).

    ``text_columns`` (the id and the path-or-URL column) are read from CSV as
    text exactly as written, so an id such as ``007`` keeps its zeros.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such table file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            table = pd.read_parquet(path)
        elif suffix == ".txt":
            lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
            table = pd.DataFrame({"path": [line for line in lines if line and not line.startswith("#")]})
        else:
            text = {name: str for name in text_columns if name is not None}
            table = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=text)
    except (ValueError, OSError, UnicodeDecodeError) as exc:  # pandas' and pyarrow's parse errors are ValueErrors
        raise InvalidArgument(f"cannot read the table {path}: {exc}") from None
    if len(table) == 0:
        raise InvalidArgument(f"the table {path} has no rows")
    return table


def expand_sources(source: str | os.PathLike | Sequence[str | os.PathLike], recursive: bool = True) -> list[str]:
    """:func:`list_image_files`, keeping URLs (anything ``scheme://``) as they are, in place."""
    entries = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    found: list[str] = []
    for entry in entries:
        if url_scheme(entry) is not None:
            found.append(entry.strip())
        else:
            found.extend(str(path) for path in list_image_files(entry, recursive=recursive))
    return found


def folder_roots(dataset: Any) -> tuple[str, ...]:
    """The folders (resolved) that a dataset of local folders, files or globs came from; () for anything else.

    These bound every file action on the references (moving discarded duplicates):
    a model of URLs, a table file or an in-memory table has none, so nothing of it is moved.
    """
    entries = [dataset] if isinstance(dataset, (str, os.PathLike)) else dataset
    if not isinstance(entries, (list, tuple)) or not all(isinstance(e, (str, os.PathLike)) for e in entries):
        return ()
    roots = set()
    for entry in entries:
        if url_scheme(os.fspath(entry)) is not None or is_table_file(entry):
            return ()
        path = os.fspath(entry)
        if glob.has_magic(path):  # the deepest folder without a pattern
            parts = Path(path).parts
            path = os.path.join(*parts[: next(i for i, part in enumerate(parts) if glob.has_magic(part))] or ["."])
        roots.add(os.path.realpath(path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))))
    return tuple(sorted(roots))


def absolute_paths(paths: Sequence[Any], roots: Sequence[str]) -> list[Any]:
    """``paths`` (of files indexed from the folders ``roots``, resolved) as absolute paths; anything else unchanged.

    A path made relative to the working folder of the run that indexed it (``lookalike index photos``) is
    found again from any other folder: through the working folder when it leads into a root, else below the
    root it names (``photos/sub/a.jpg`` below ``/base/photos``, or below a root indexed as ``.``). One that
    cannot be found is kept as it was.
    """
    found = []
    for path in paths:
        if not isinstance(path, str) or os.path.isabs(path) or url_scheme(path) is not None:
            found.append(path)
            continue
        found.append(_absolute(path, roots))
    return found


def _absolute(path: str, roots: Sequence[str]) -> str:
    here = os.path.abspath(path)
    folder = os.path.realpath(os.path.dirname(here))
    if os.path.lexists(here) and any(folder == r or folder.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
        return here
    parts = Path(path).parts
    for root in roots:
        named = [k for k in range(1, len(parts)) if parts[k - 1] == Path(root).name]
        for k in [*named, 0]:  # the root as the path names it, else the path taken from the root itself
            candidate = os.path.join(root, *parts[k:])
            if os.path.lexists(candidate):
                return candidate
    return path


def _read_header(path: Any) -> tuple[int, int, str, int, float] | ImageError:
    """(width, height, format, bytes, mtime), or why the file is unusable."""
    try:
        info = probe(path)
        stat = os.stat(path)
    except ImageError as exc:
        return exc
    except OSError as exc:
        return ImageError(source_name(path), f"cannot read file ({exc.strerror or exc})", "unreadable file")
    return info.width, info.height, info.format, stat.st_size, stat.st_mtime


def load_images(
    url: str | os.PathLike | Sequence[str | os.PathLike] | pd.DataFrame,
    recursive: bool = True,
    with_path: bool = True,
    ignore_failure: bool = True,
    random_order: bool = False,
    *,
    feature: str | None = None,
    label: str | None = None,
    download: DownloadSettings | dict | None = None,
    verbose: bool = True,
) -> pd.DataFrame:
    """List images (a folder, glob, file, URLs, or a table of paths or URLs) as a table of paths and headers.

    Like Turi Create's ``image_analysis.load_images``, but the table holds
    paths and header metadata, never decoded pixels. http(s) URLs are
    downloaded into the download cache first (concurrently, with timeouts,
    retries and a size cap; see :class:`~lookalike.ingest.download.DownloadSettings`).

    Parameters
    ----------
    url : str, path-like, list of them, or pandas.DataFrame
        A folder, a glob pattern (``"photos/**/*.jpg"``), an image file or
        URL, a list of those, a table file (``.csv``, ``.tsv``, ``.parquet``,
        or ``.txt`` with one path or URL a line), or a DataFrame with a
        column of paths or URLs.
    recursive : bool, default True
        Walk sub-folders.
    with_path : bool, default True
        Name the image column ``path`` (True) or ``image`` (False, as Turi's
        image column). Either way it holds the file path (or URL), which is
        how lookalike reaches the pixels. Tables keep their own column names.
    ignore_failure : bool, default True
        Skip images that cannot be read or downloaded and list them in
        ``df.attrs["failures"]`` (a list of ``{"path", "kind", "reason"}``,
        plus ``"id"`` with ``label``; see :class:`~lookalike.errors.Failure`).
        When False, the first such image raises :class:`~lookalike.ImageError`.
    random_order : bool, default False
        Shuffle the rows (otherwise they keep the order of the table, or are sorted by path).
    feature : str, optional
        A table's column of paths or URLs; found automatically when only one
        column (or one named ``path``, ``image``, ``url``..., or one holding
        http(s) URLs) could be it.
    label : str, optional
        A table's id column: failures carry the id of their row.
    download : dict or DownloadSettings, optional
        Timeouts, size cap, retries and concurrency for URLs.
    verbose : bool, default True
        Show a progress bar while downloading.

    Returns
    -------
    pandas.DataFrame
        Columns ``path`` (or ``image``), ``width``, ``height``, ``format``,
        ``bytes``, ``mtime``; a table keeps its own columns and gains the
        header columns (for URLs, of the downloaded file).

    Examples
    --------
    >>> import lookalike as lk
    >>> refs = lk.load_images("samples/clothing")
    >>> refs.columns.tolist()
    ['path', 'width', 'height', 'format', 'bytes', 'mtime']
    >>> urls = lk.load_images("urls.csv", label="id", feature="url")  # doctest: +SKIP
    """
    if isinstance(url, pd.DataFrame) or is_table_file(url):
        table = url.reset_index(drop=True) if isinstance(url, pd.DataFrame) else read_table(url, (label, feature))
        column = find_feature_column(table, feature, want="image", label=label)
        if not table[column].map(lambda v: isinstance(v, (str, os.PathLike)) or v is None or v != v).all():
            raise InvalidArgument(f"load_images reads image files and URLs, but column {column!r} holds other values")
    else:
        column = "path" if with_path else "image"
        table = pd.DataFrame({column: text_column(expand_sources(url, recursive=recursive))})
    values = table[column].tolist()
    local = localize(values, download, verbose=verbose)
    with ThreadPoolExecutor(_PROBE_THREADS) as pool:
        headers = list(pool.map(_read_header, local.sources))
    header_failures = [Failure.of(p, h) for p, h in enumerate(headers) if isinstance(h, ImageError)]
    ok, failed = local.merge([p for p, h in enumerate(headers) if not isinstance(h, ImageError)], header_failures)
    if failed and not ignore_failure:
        raise failed[0].error()
    ids = table[label].tolist() if label is not None and label in table.columns else None
    if ids is not None:
        failed = [replace(f, id=ids[f.position]) for f in failed]
    failures = [failure_record(f, with_id=ids is not None) for f in failed]
    found = table.iloc[ok].reset_index(drop=True)
    header = pd.DataFrame([h for h in headers if not isinstance(h, ImageError)], columns=_HEADER_COLUMNS)
    for name, dtype in _HEADER_COLUMNS.items():
        found[name] = header[name].to_numpy(dtype=dtype)
    if random_order:
        found = found.iloc[np.random.default_rng().permutation(len(found))].reset_index(drop=True)
    found.attrs["failures"] = failures
    return found
