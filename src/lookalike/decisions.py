"""Decisions a person made about duplicates, kept so that every later run honours them.

"Keep this one", "discard this one (a duplicate of that one)" and "these two
are not duplicates" are recorded by file path and content (SHA-256), not by
label: they survive ``add``, a re-index and a change of network. A decision
whose file has since changed or gone is reported and not applied. They are
saved beside the model as one small JSON file (``decisions.json``), written
atomically on its own, so recording one never rewrites the embeddings; two
writers (two explorers on one model) take turns under a lock on the model's
folder and each merges its change into what the other wrote.

A discard that has been carried out (the file moved away by
:mod:`lookalike.moves`) stays recorded with where the file went: it is a
labelled pair, exported by :meth:`Decisions.pairs` for ``lookalike evaluate``.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from lookalike.errors import InvalidArgument, ModelFormatError
from lookalike.files import file_sha256, locked, write_text_atomic
from lookalike.storage import read_side_file

__all__ = ["DECISIONS_FILE", "KINDS", "Decisions", "read_saved"]

DECISIONS_FILE = "decisions.json"
VERSION = 2  # 2: "discard" decisions, and "moved_to" on those carried out
#: The kinds of decision and how many files each names: keep [file]; discard [file, its keeper]; not-duplicate [a, b].
KINDS = {"keep": 1, "discard": 2, "not-duplicate": 2}


#: SHA-256 of files already read, by (path, size, modification time): every find_duplicates checks each decision's
#: files, and an explorer regroups after each decision; a file is read again only when it changed.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def _digest(path: str) -> str | None:
    try:
        stat = os.stat(path)
        key = (path, stat.st_size, stat.st_mtime_ns)
        if key not in _DIGESTS:
            _DIGESTS[key] = file_sha256(path)
        return _DIGESTS[key]
    except OSError:
        return None


class Decisions:
    """The recorded decisions: each ``{"kind", "paths", "sha256", "time"}`` (and ``"moved_to"`` once carried out).

    A file has at most one keep-or-discard decision (the latest); a pair at most one not-duplicate.
    """

    def __init__(self, records: list[dict[str, Any]] | None = None):
        self.records = list(records or [])

    def __len__(self) -> int:
        return len(self.records)

    def _add(self, kind: str, paths: list[str]) -> None:
        digests = [_digest(p) for p in paths]
        missing = [p for p, d in zip(paths, digests, strict=True) if d is None]
        if missing:
            raise InvalidArgument(f"cannot record a decision on {missing[0]}: the file cannot be read")
        self._drop(kind, paths)
        self.records.append({"kind": kind, "paths": paths, "sha256": digests, "time": time.time()})

    def _drop(self, kind: str, paths: list[str]) -> None:
        """Forget the decisions a new one of ``kind`` on ``paths`` supersedes: a file's keep or discard, and the
        pending judgement of the same pair (a discard says the pair is a duplicate, a not-duplicate that it is not)."""
        pair = sorted(paths)

        def superseded(record: dict[str, Any]) -> bool:
            if "moved_to" in record:
                return False
            if kind != "not-duplicate" and record["kind"] != "not-duplicate" and record["paths"][0] == paths[0]:
                return True
            return len(paths) == 2 and record["kind"] != "keep" and sorted(record["paths"]) == pair

        self.records = [r for r in self.records if not superseded(r)]

    def keep(self, path: str | os.PathLike) -> None:
        """Keep this file in its group whatever the keeper policy says."""
        self._add("keep", [os.fspath(path)])

    def discard(self, path: str | os.PathLike, keeper: str | os.PathLike) -> None:
        """This file is a duplicate of ``keeper``, to be moved away (by :func:`lookalike.moves.apply_discards`)."""
        if os.fspath(path) == os.fspath(keeper):
            raise InvalidArgument("a file cannot be discarded as a duplicate of itself")
        self._add("discard", [os.fspath(path), os.fspath(keeper)])

    def not_duplicate(self, a: str | os.PathLike, b: str | os.PathLike) -> None:
        """These two files are not duplicates: never link them again."""
        if os.fspath(a) == os.fspath(b):
            raise InvalidArgument("a file cannot be marked as not a duplicate of itself")
        self._add("not-duplicate", sorted([os.fspath(a), os.fspath(b)]))

    def forget(self, path: str | os.PathLike) -> None:
        """Forget the pending keep or discard decision on this file (a carried-out one stays)."""
        path = os.fspath(path)
        self.records = [
            r
            for r in self.records
            if not (r["kind"] != "not-duplicate" and r["paths"][0] == path and "moved_to" not in r)
        ]

    def mark_moved(self, destinations: dict[str, str]) -> None:
        """Record that the discarded files ``destinations`` names (source -> where it went) were moved away."""
        for record in self.records:
            source = record["paths"][0]
            if record["kind"] == "discard" and source in destinations and "moved_to" not in record:
                record["moved_to"] = destinations[source]

    def revert_moves(self, sources: set[str]) -> None:
        """Forget the carried-out discards of these files (moved back by an undo): they are not discarded again."""
        self.records = [r for r in self.records if not (r["kind"] == "discard" and r["paths"][0] in sources)]

    def merge(self, other: Decisions) -> None:
        """Add ``other``'s decisions not already here (another writer's), the latest winning where they disagree."""
        known = {_key(r): r for r in self.records}
        for record in other.records:
            if _key(record) in known:
                known[_key(record)].update({k: v for k, v in record.items() if k == "moved_to"})
            else:
                self.records.append(record)
        self.records.sort(key=lambda r: r["time"])
        latest: dict[tuple, dict[str, Any]] = {}
        for record in self.records:
            if "moved_to" not in record:
                subject = (record["paths"][0],) if record["kind"] != "not-duplicate" else tuple(record["paths"])
                latest[subject] = record
        current = {id(r) for r in latest.values()}
        self.records = [r for r in self.records if "moved_to" in r or id(r) in current]

    def state_of(self, path: str) -> str | None:
        """``"keep"`` or ``"discard"`` when this file has such a pending decision, else None."""
        for record in reversed(self.records):
            if record["kind"] != "not-duplicate" and record["paths"][0] == path and "moved_to" not in record:
                return record["kind"]
        return None

    def valid(self) -> list[dict[str, Any]]:
        """The pending decisions whose files are unchanged; the others are reported in a warning, not applied."""
        valid, stale = [], []
        for record in self.records:
            if "moved_to" in record:
                continue  # carried out: its file is no longer a reference
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

    def pairs(self) -> pd.DataFrame:
        """Every pair a person judged, as ``a, b, duplicate`` (a discarded file and its keeper: True; not duplicates:
        False), with ``a_now`` where ``a`` is now when it was moved. ``lookalike evaluate --pairs`` scores a network on them.
        """
        rows = [
            (r["paths"][0], r["paths"][1], r["kind"] == "discard", r.get("moved_to") or r["paths"][0])
            for r in self.records
            if r["kind"] != "keep"
        ]
        return pd.DataFrame(rows, columns=["a", "b", "duplicate", "a_now"]).astype({"duplicate": bool})

    def to_json(self) -> str:
        # ensure_ascii keeps the exact characters of names that are not UTF-8 (as \\udcXX escapes)
        return json.dumps({"version": VERSION, "decisions": self.records}, indent=1) + "\n"

    def save(self, model_folder: str | os.PathLike) -> Path:
        """Write ``decisions.json`` in the model's folder, atomically and on its own."""
        return write_text_atomic(Path(model_folder) / DECISIONS_FILE, self.to_json())

    def change_saved(self, model_folder: str | os.PathLike, change: Callable[[Decisions], None]) -> None:
        """Apply ``change`` to the decisions saved in ``model_folder`` (not to a stale copy) and save them.

        The folder is locked meanwhile, so two processes recording decisions on one
        model both keep theirs. This object becomes the merged decisions.
        """
        with locked(model_folder):
            saved = read_saved(model_folder)
            change(saved)
            saved.save(model_folder)
        self.records = saved.records

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
                or len(paths) != KINDS[record["kind"]]
                or not all(isinstance(p, str) for p in paths + digests)
                or not isinstance(record.get("moved_to", ""), str)
            ):
                raise ModelFormatError(f"{where} holds a malformed decision: {str(record)[:200]}")
        return cls(data["decisions"])


def _key(record: dict[str, Any]) -> tuple:
    return (record["kind"], tuple(record["paths"]), record["time"])


def read_saved(model_folder: str | os.PathLike) -> Decisions:
    """The decisions saved in a model's folder (none when it has no ``decisions.json``)."""
    where = Path(model_folder) / DECISIONS_FILE
    data = read_side_file(model_folder, DECISIONS_FILE)
    return Decisions() if data is None else Decisions.parse(data.decode("utf-8", "replace"), str(where))
