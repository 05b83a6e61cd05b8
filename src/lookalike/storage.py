"""The on-disk model format: a directory written atomically, read with validation, no pickle.

MODEL/
  manifest.json        format name + version, embedding model spec, metric, counts
  embeddings.npy       (n, d) float32, memory-mapped on load
  references.parquet   labels (column ``__label``), paths and metadata
  failures.parquet     images that could not be embedded: source, kind, reason (and id)
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from lookalike.errors import InvalidArgument, ModelFormatError
from lookalike.files import replace_dir, staging_dir
from lookalike.ingest.report import with_kinds

FORMAT = "lookalike-model"
FORMAT_VERSION = 1
LABEL_COLUMN = "__label"
_FILES = ("manifest.json", "embeddings.npy", "references.parquet", "failures.parquet")


def npy_bytes(array: np.ndarray) -> bytes:
    """A float32 array as the bytes of a ``.npy`` file (for ``save(extra_files=...)``)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def is_model_dir(path: Path) -> bool:
    try:
        return json.loads((path / "manifest.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def save(
    path: str | os.PathLike,
    manifest: dict[str, Any],
    embeddings: np.ndarray,
    references: pd.DataFrame,
    failures: pd.DataFrame,
    extra_files: dict[str, bytes | Callable[[Path], None]] | None = None,
) -> Path:
    """Write a model directory atomically: readers see the old model or the new one, never half.

    An existing ``path`` is replaced only if it is itself a lookalike model
    (or an empty folder), so a typo cannot wipe out someone's photos.
    """
    target = Path(path)
    if target.exists() and not (is_model_dir(target) or (target.is_dir() and not any(target.iterdir()))):
        raise FileExistsError(f"{target} exists and is not a lookalike model; refusing to overwrite it")
    with staging_dir(target) as staging:
        np.save(staging / "embeddings.npy", np.ascontiguousarray(embeddings, dtype=np.float32))
        try:
            references.to_parquet(staging / "references.parquet", index=False)
            failures.to_parquet(staging / "failures.parquet", index=False)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"cannot save the reference table (labels and metadata must be plain values): {exc}"
            ) from None
        for name, data in (extra_files or {}).items():
            # bytes, or a function writing the file itself (a large faiss index is never held twice)
            data(staging / name) if callable(data) else (staging / name).write_bytes(data)
        full_manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}
        (staging / "manifest.json").write_text(json.dumps(full_manifest, indent=2, default=str))
        replace_dir(staging, target)
    return target


def load(path: str | os.PathLike) -> tuple[dict[str, Any], np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Read and validate a model directory: (manifest, embeddings (memory-mapped), references, failures)."""
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"no saved model at {folder}")
    if not folder.is_dir():
        raise ModelFormatError(f"{folder} is not a lookalike model (a model is a directory with manifest.json)")
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except FileNotFoundError:
        raise ModelFormatError(f"{folder} is not a lookalike model: manifest.json is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{folder}/manifest.json is unreadable or not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFormatError(f"{folder} is not a lookalike model (manifest format is not {FORMAT!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFormatError(f"{folder}/manifest.json has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{folder} was saved in model format {version}, newer than this lookalike reads ({FORMAT_VERSION}): upgrade lookalike"
        )
    missing = [name for name in _FILES if not (folder / name).is_file()]
    if missing:
        raise ModelFormatError(f"{folder} is damaged: missing {', '.join(missing)}")
    try:
        embeddings = np.load(folder / "embeddings.npy", mmap_mode="r", allow_pickle=False)
        references = pd.read_parquet(folder / "references.parquet")
        failures = pd.read_parquet(folder / "failures.parquet")
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ModelFormatError(f"{folder} is damaged: {exc}") from None
    count, dim = manifest.get("count"), manifest.get("dim")
    if embeddings.dtype != np.float32 or embeddings.ndim != 2 or embeddings.shape != (count, dim):
        raise ModelFormatError(
            f"{folder} is damaged: embeddings.npy is {embeddings.dtype} {embeddings.shape}, manifest says float32 ({count}, {dim})"
        )
    if len(references) != count or LABEL_COLUMN not in references.columns:
        raise ModelFormatError(f"{folder} is damaged: references.parquet does not match embeddings.npy")
    return manifest, embeddings, references, with_kinds(failures)
