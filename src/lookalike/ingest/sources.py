"""Find images: folders, globs, single files and lists of paths, into a table of paths.

Only file headers are read here (size, format): no pixels are decoded, so
listing a large collection is fast and its memory does not grow with image size.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from lookalike.ingest.decode import ImageError, probe

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

_PROBE_THREADS = 8  # header reads are mostly I/O waits: more threads than cores pay off


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
        path = Path(source)
        if path.is_dir():
            files.extend(_walk(path, recursive))
        elif path.exists():
            files.append(path)
        elif glob.has_magic(str(source)):
            for match in sorted(glob.glob(str(source), recursive=recursive)):
                match_path = Path(match)
                files.extend(_walk(match_path, recursive) if match_path.is_dir() else [match_path])
        else:
            raise FileNotFoundError(f"no such file or folder: {source}")
    return files


def _walk(folder: Path, recursive: bool) -> list[Path]:
    found = []
    if recursive:
        for root, dirs, names in os.walk(folder):
            dirs.sort()
            found.extend(Path(root) / n for n in sorted(names) if Path(n).suffix.lower() in IMAGE_EXTENSIONS)
    else:
        found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    return found


def _read_header(path: Path) -> tuple[int, int, str, int, float] | str:
    """(width, height, format, bytes, mtime), or the reason the file is unusable."""
    try:
        info = probe(path)
        stat = path.stat()
    except ImageError as exc:
        return exc.reason
    except OSError as exc:
        return f"cannot read file ({exc.strerror or exc})"
    return info.width, info.height, info.format, stat.st_size, stat.st_mtime


def load_images(
    url: str | os.PathLike | Sequence[str | os.PathLike],
    recursive: bool = True,
    with_path: bool = True,
    ignore_failure: bool = True,
    random_order: bool = False,
) -> pd.DataFrame:
    """List the images in a folder (or glob, file, list of paths) as a table.

    Like Turi Create's ``image_analysis.load_images``, but the table holds
    paths and header metadata, never decoded pixels.

    Parameters
    ----------
    url : str, path-like or list of them
        A folder, a glob pattern (``"photos/**/*.jpg"``), an image file, or a list of those.
    recursive : bool, default True
        Walk sub-folders.
    with_path : bool, default True
        Name the image column ``path`` (True) or ``image`` (False, as Turi's
        image column). Either way it holds the file path, which is how
        lookalike reaches the pixels.
    ignore_failure : bool, default True
        Skip files that are not readable images and list them in
        ``df.attrs["failures"]`` (a list of ``{"path", "reason"}``). When
        False, the first such file raises :class:`~lookalike.ImageError`.
    random_order : bool, default False
        Shuffle the rows (otherwise they are sorted by path).

    Returns
    -------
    pandas.DataFrame
        Columns ``path`` (or ``image``), ``width``, ``height``, ``format``,
        ``bytes``, ``mtime``.

    Examples
    --------
    >>> import lookalike as lk
    >>> refs = lk.load_images("samples/clothing")
    >>> refs.columns.tolist()
    ['path', 'width', 'height', 'format', 'bytes', 'mtime']
    """
    files = list_image_files(url, recursive=recursive)
    rows, failures = [], []
    with ThreadPoolExecutor(_PROBE_THREADS) as pool:
        for path, header in zip(files, pool.map(_read_header, files), strict=True):
            if isinstance(header, str):
                if not ignore_failure:
                    raise ImageError(str(path), header)
                failures.append({"path": str(path), "reason": header})
            else:
                rows.append((str(path), *header))
    column = "path" if with_path else "image"
    table = pd.DataFrame(rows, columns=[column, "width", "height", "format", "bytes", "mtime"])
    table = table.astype({"width": "int64", "height": "int64", "bytes": "int64", "mtime": "float64"})
    if random_order:
        table = table.iloc[np.random.default_rng().permutation(len(table))].reset_index(drop=True)
    table.attrs["failures"] = failures
    return table
