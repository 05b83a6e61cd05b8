"""Decisions a person made about duplicates, kept so that every later run honours them.

"Keep this one" and "these two are not duplicates" are recorded by file path
and content (SHA-256), not by label: they survive ``add``, a re-index and a
change of network. A decision whose file has since changed or gone is
reported and not applied. They are saved beside the model as one small JSON
file (``decisions.json``), written atomically on its own, so recording one
never rewrites the embeddings.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

from lookalike.errors import InvalidArgument, ModelFormatError
from lookalike.files import file_sha256, write_text_atomic

__all__ = ["DECISIONS_FILE", "Decisions"]

DECISIONS_FILE = "decisions.json"
VERSION = 1
KINDS = ("keep", "not-duplicate")


def _digest(path: str) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


class Decisions:
    """The recorded decisions: each ``{"kind", "paths", "sha256", "time"}``."""

    def __init__(self, records: list[dict[str, Any]] | None = None):
        self.records = list(records or [])

    def __len__(self) -> int:
        return len(self.records)

    def _add(self, kind: str, paths: list[str]) -> None:
        digests = [_digest(p) for p in paths]
        missing = [p for p, d in zip(paths, digests, strict=True) if d is None]
        if missing:
            raise InvalidArgument(f"cannot record a decision on {missing[0]}: the file cannot be read")
        self.records.append({"kind": kind, "paths": paths, "sha256": digests, "time": time.time()})

    def keep(self, path: str | os.PathLike) -> None:
        """Keep this file in its group whatever the keeper policy says."""
        self._add("keep", [os.fspath(path)])

    def not_duplicate(self, a: str | os.PathLike, b: str | os.PathLike) -> None:
        """These two files are not duplicates: never link them again."""
        if os.fspath(a) == os.fspath(b):
            raise InvalidArgument("a file cannot be marked as not a duplicate of itself")
        self._add("not-duplicate", sorted([os.fspath(a), os.fspath(b)]))

    def valid(self) -> list[dict[str, Any]]:
        """The decisions whose files are unchanged; the others are reported in a warning, not applied."""
        valid, stale = [], []
        for record in self.records:
            same = all(_digest(p) == d for p, d in zip(record["paths"], record["sha256"], strict=True))
            (valid if same else stale).append(record)
        if stale:
            shown = ", ".join(" / ".join(r["paths"]) for r in stale[:3])
            warnings.warn(
                f"{len(stale)} duplicate decisions are not applied: their files changed or are gone ({shown})",
                RuntimeWarning,
                stacklevel=3,
            )
        return valid

    def to_json(self) -> str:
        # ensure_ascii keeps the exact characters of names that are not UTF-8 (as \\udcXX escapes)
        return json.dumps({"version": VERSION, "decisions": self.records}, indent=1) + "\n"

    def save(self, model_folder: str | os.PathLike) -> Path:
        """Write ``decisions.json`` in the model's folder, atomically and on its own."""
        return write_text_atomic(Path(model_folder) / DECISIONS_FILE, self.to_json())

    @classmethod
    def parse(cls, text: str, where: str) -> Decisions:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ModelFormatError(f"{where} is damaged: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("decisions"), list):
            raise ModelFormatError(f"{where} is not a list of decisions")
        if not isinstance(data.get("version"), int) or data["version"] > VERSION:
            raise ModelFormatError(f"{where} has decisions version {data.get('version')!r}: upgrade lookalike")
        for record in data["decisions"]:
            paths, digests = (record.get("paths"), record.get("sha256")) if isinstance(record, dict) else (None, None)
            if (
                not isinstance(record, dict)
                or record.get("kind") not in KINDS
                or not isinstance(paths, list)
                or not isinstance(digests, list)
                or len(paths) != len(digests)
                or len(paths) != (1 if record["kind"] == "keep" else 2)
                or not all(isinstance(p, str) for p in paths + digests)
            ):
                raise ModelFormatError(f"{where} holds a malformed decision: {str(record)[:200]}")
        return cls(data["decisions"])
