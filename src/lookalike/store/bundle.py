"""A model's derived side files (the map, dedup's candidate pairs): named arrays and a JSON record in one
uncompressed ``.npz``, nothing pickled, read back only as written.

Each is derived from the references and saved beside the model's generations: losing or refusing one costs the
time to compute it again, never anything a person did.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from lookalike.errors import ModelFormatError

__all__ = ["from_bytes", "to_bytes"]

#: The member holding the record, beside the arrays.
_RECORD = "record"


def to_bytes(arrays: dict[str, np.ndarray], record: dict) -> bytes:
    """The ``.npz`` of ``arrays`` (stored, not compressed) and ``record`` (as a JSON string)."""
    if _RECORD in arrays:
        raise ValueError(f"an array may not be named {_RECORD!r}")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{_RECORD: np.array(json.dumps(record))})
    return buffer.getvalue()


def from_bytes(data: bytes, where: str, what: str, names: set[str] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """``(arrays, record)`` of what :func:`to_bytes` wrote (``names``: the arrays it must hold, when fixed);
    anything else raises ModelFormatError naming ``where`` and ``what`` it should have been."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelFormatError(f"{where} is damaged: {exc}") from None
    found = {m.filename for m in members}
    # Stored members only, of sizes that add up to the file: no member can inflate beyond what was read.
    if (
        f"{_RECORD}.npy" not in found
        or not all(name.endswith(".npy") for name in found)
        or (names is not None and found != {f"{name}.npy" for name in names | {_RECORD}})
        or any(m.compress_type != zipfile.ZIP_STORED or m.file_size > len(data) for m in members)
    ):
        raise ModelFormatError(f"{where} is not a {what} lookalike wrote: {sorted(found)}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files if name != _RECORD}
            text = str(stored[_RECORD])
        record = json.loads(text)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, RecursionError) as exc:
        raise ModelFormatError(f"{where} is damaged: {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("version"), int):
        raise ModelFormatError(f"{where} has no {what} record")
    return arrays, record
