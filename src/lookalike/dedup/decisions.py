"""Decisions a person made about duplicates, kept so that every later run honours them.

"Keep this one", "discard this one (a duplicate of that one)" and "these two
are not duplicates" are recorded by file path and content (SHA-256), not by
label: they survive ``add``, a re-index and a change of network. A decision
whose file has since changed or gone is reported and not applied. They are
saved beside the model as one small JSON file (``decisions.json``), written
atomically on its own, so recording one never rewrites the embeddings; two
writers (two explorers on one model, several ``lookalike decide`` at once)
take turns under a lock on the model's folder and each merges its change into
what the other wrote.

A ``decisions.json`` that is not what lookalike writes (not JSON, an entry
without ``time``, a ``time`` that is text) is a one-line error naming it
wherever the model is loaded, and is never written over: a writer keeps it
aside as ``decisions.json.damaged-<date>-<time>``, says so, and records
nothing, so that the next decision starts a new file.

A discard that has been carried out (the file moved away by
:mod:`lookalike.dedup.moves`) stays recorded with where the file went: it is a
labelled pair, exported by :meth:`Decisions.pairs` for ``lookalike evaluate``.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from lookalike.errors import InvalidArgument, ModelFormatError
from lookalike.store.files import file_sha256, locked, set_aside, write_text_atomic
from lookalike.store.manifest import DECISIONS_FILE
from lookalike.store.storage import read_side_file

__all__ = [
    "AUDIT_KINDS",
    "DECISIONS_FILE",
    "DEDUP_KINDS",
    "KINDS",
    "DamagedDecisions",
    "Decisions",
    "read_saved",
    "set_aside_damaged",
]

VERSION = 2  # 2: "discard" decisions, and "moved_to" on those carried out
#: The kinds of decision and how many files each names: keep [file]; discard [file, its keeper]; not-duplicate [a, b].
DEDUP_KINDS = {"keep": 1, "discard": 2, "not-duplicate": 2}
#: A person's verdicts on audit findings, one file each: an audit finding of ``finding`` kind that is not an issue;
#: a photo whose class should be ``label``; a photo to leave out of the dataset (never moved: exported as such).
AUDIT_KINDS = {"not-an-issue": 1, "relabel": 1, "exclude": 1}
KINDS = {**DEDUP_KINDS, **AUDIT_KINDS}
#: The field each audit kind needs beside the paths.
_AUDIT_FIELDS = {"not-an-issue": "finding", "relabel": "label"}


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

    def _add(self, kind: str, paths: list[str], **extra: str) -> None:
        digests = [_digest(p) for p in paths]
        missing = [p for p, d in zip(paths, digests, strict=True) if d is None]
        if missing:
            raise InvalidArgument(f"cannot record a decision on {missing[0]}: the file cannot be read")
        record = {"kind": kind, "paths": paths, "sha256": digests, "time": time.time(), **extra}
        self.records = [r for r in self.records if _subject(r) != _subject(record) or "moved_to" in r]
        if kind in DEDUP_KINDS:
            self._drop(kind, paths)
        self.records.append(record)

    def _drop(self, kind: str, paths: list[str]) -> None:
        """Forget the decisions a new one of ``kind`` on ``paths`` supersedes: a file's keep or discard, and the
        pending judgement of the same pair (a discard says the pair is a duplicate, a not-duplicate that it is not)."""
        pair = sorted(paths)

        def superseded(record: dict[str, Any]) -> bool:
            if "moved_to" in record or record["kind"] in AUDIT_KINDS:
                return False
            if kind != "not-duplicate" and record["kind"] != "not-duplicate" and record["paths"][0] == paths[0]:
                return True
            return len(paths) == 2 and record["kind"] != "keep" and sorted(record["paths"]) == pair

        self.records = [r for r in self.records if not superseded(r)]

    def keep(self, path: str | os.PathLike) -> None:
        """Keep this file in its group whatever the keeper policy says."""
        self._add("keep", [os.fspath(path)])

    def discard(self, path: str | os.PathLike, keeper: str | os.PathLike) -> None:
        """This file is a duplicate of ``keeper``, to be moved away (by :func:`lookalike.dedup.moves.apply_discards`)."""
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
            if not (r["kind"] in ("keep", "discard") and r["paths"][0] == path and "moved_to" not in r)
        ]

    def not_an_issue(self, path: str | os.PathLike, finding: str) -> None:
        """The audit's ``finding`` (a kind: ``blurry``, ``label-error``...) on this file is not an issue: never
        report it again while the file is unchanged."""
        self._add("not-an-issue", [os.fspath(path)], finding=finding)

    def relabel(self, path: str | os.PathLike, label: str) -> None:
        """This photo's class should be ``label`` (exported by :meth:`dataset_changes`)."""
        self._add("relabel", [os.fspath(path)], label=str(label))

    def exclude(self, path: str | os.PathLike) -> None:
        """Leave this photo out of the dataset (exported by :meth:`dataset_changes`; the file is not touched)."""
        self._add("exclude", [os.fspath(path)])

    def forget_verdicts(self, path: str | os.PathLike) -> None:
        """Forget every audit verdict on this file (not an issue, relabel, exclude)."""
        path = os.fspath(path)
        self.records = [r for r in self.records if not (r["kind"] in AUDIT_KINDS and r["paths"][0] == path)]

    def dismissed(self) -> set[tuple[str, str]]:
        """``(path, finding kind)`` of each finding marked not an issue whose file is unchanged."""
        return {(r["paths"][0], r["finding"]) for r in self._audit_valid() if r["kind"] == "not-an-issue"}

    def audit_states(self) -> dict[str, str]:
        """What a person decided about each photo's place in the dataset: ``"relabel: LABEL"`` or ``"exclude"``."""
        return {
            r["paths"][0]: f"relabel: {r['label']}" if r["kind"] == "relabel" else "exclude"
            for r in self._audit_valid()
            if r["kind"] in ("relabel", "exclude")
        }

    def dataset_changes(self) -> pd.DataFrame:
        """The relabelled and excluded photos, as ``path, action (relabel or exclude), label``: what to apply to a
        training set's table."""
        rows = [
            (r["paths"][0], r["kind"], r.get("label"))
            for r in self._audit_valid()
            if r["kind"] in ("relabel", "exclude")
        ]
        return pd.DataFrame(rows, columns=["path", "action", "label"])

    def _audit_valid(self) -> list[dict[str, Any]]:
        """The audit verdicts whose file is unchanged (a changed photo is judged afresh)."""
        return [
            r
            for r in self.records
            if r["kind"] in AUDIT_KINDS and all(_digest(p) == d for p, d in zip(r["paths"], r["sha256"], strict=True))
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
                latest[_subject(record)] = record
        current = {id(r) for r in latest.values()}
        self.records = [r for r in self.records if "moved_to" in r or id(r) in current]

    def state_of(self, path: str) -> str | None:
        """``"keep"`` or ``"discard"`` when this file has such a pending decision, else None."""
        for record in reversed(self.records):
            if record["kind"] in ("keep", "discard") and record["paths"][0] == path and "moved_to" not in record:
                return record["kind"]
        return None

    def valid(self) -> list[dict[str, Any]]:
        """The pending decisions whose files are unchanged; the others are reported in a warning, not applied."""
        valid, stale = [], []
        for record in self.records:
            if "moved_to" in record or record["kind"] in AUDIT_KINDS:
                continue  # carried out: its file is no longer a reference; audit verdicts: see audit_states
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
            if r["kind"] in ("discard", "not-duplicate")
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

        Raises
        ------
        DamagedDecisions
            The saved file is damaged: it is kept aside (named in the message) and nothing is recorded.
        """
        with locked(model_folder):
            saved = _read_or_set_aside(model_folder)  # a damaged file is never written over
            change(saved)
            saved.save(model_folder)
        self.records = saved.records

    @classmethod
    def parse(cls, text: str, where: str) -> Decisions:
        """The decisions of a ``decisions.json`` whose text is ``text`` (``where`` names it in errors).

        Raises
        ------
        DamagedDecisions
            Not JSON, or not decisions as lookalike writes them (an entry without ``time``, a ``time`` that is text...).
        lookalike.errors.ModelFormatError
            Decisions written by a newer lookalike.
        """
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise DamagedDecisions(where, f"not JSON: {exc}") from None
        if (
            not isinstance(data, dict)
            or set(data) != {"version", "decisions"}
            or not isinstance(data["decisions"], list)
        ):
            raise DamagedDecisions(where, 'not an object of "version" and "decisions" (a list)')
        version = data["version"]
        if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
            raise ModelFormatError(f"{where} has decisions version {version}: upgrade lookalike")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise DamagedDecisions(where, f"its version {version!r} is not a version number")
        for number, record in enumerate(data["decisions"], 1):
            problem = _problem(record)
            if problem is not None:
                raise DamagedDecisions(where, f"decision {number} {problem}: {json.dumps(record)[:200]}")
        return cls(data["decisions"])


class DamagedDecisions(ModelFormatError):
    """A ``decisions.json`` that is not decisions as lookalike writes them; ``path`` names it, ``reason`` says why.

    ``aside``: where it was kept (``decisions.json.damaged-<date>-<time>``), once :func:`set_aside_damaged` (or a
    writer of decisions) moved it there.
    """

    def __init__(self, path: str | os.PathLike, reason: str, aside: Path | None = None):
        self.path, self.reason, self.aside = Path(path), reason, aside
        if aside is None:
            advice = "repair it, or record a decision (lookalike decide) to keep it aside and start a new one"
        else:
            advice = f"kept aside as {aside}; nothing was recorded: do it again to start a new {DECISIONS_FILE}"
        super().__init__(f"{path} is damaged ({reason}): {advice}")


#: The fields of one decision, each with the check its value must pass and what it must be.
_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "kind": (lambda v: v in KINDS, f"one of {', '.join(KINDS)}"),
    "paths": (lambda v: isinstance(v, list) and all(isinstance(p, str) for p in v), "a list of paths"),
    "sha256": (
        lambda v: isinstance(v, list) and all(isinstance(d, str) and _SHA256.match(d) for d in v),
        "a list of SHA-256 digests",
    ),
    "time": (
        lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
        "a number (seconds since 1970)",
    ),
    "moved_to": (lambda v: isinstance(v, str), "a path"),
    "finding": (lambda v: isinstance(v, str) and 0 < len(v) <= 64, "a kind of finding"),
    "label": (lambda v: isinstance(v, str) and len(v) <= 1000, "a label (text)"),
}
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


def _problem(record: Any) -> str | None:
    """What is wrong with one decision as read from JSON, or None."""
    if not isinstance(record, dict):
        return "is not an object"
    for name in ("kind", "paths", "sha256", "time"):
        if name not in record:
            return f"has no {name!r}"
    unknown = sorted(set(record) - set(_FIELDS))
    if unknown:
        return f"has fields lookalike does not write ({', '.join(unknown)})"
    for name, value in record.items():
        check, wanted = _FIELDS[name]
        if not check(value):
            return f"has a {name!r} that is not {wanted}"
    if not len(record["paths"]) == len(record["sha256"]) == KINDS[record["kind"]]:
        return f"names {len(record['paths'])} files and {len(record['sha256'])} digests, not {KINDS[record['kind']]}"
    needed = _AUDIT_FIELDS.get(record["kind"])
    if needed is not None and needed not in record:
        return f"has no {needed!r}"
    extra = sorted({"finding", "label"} & set(record) - {needed})
    if extra:
        return f"has fields a {record['kind']} decision does not have ({', '.join(extra)})"
    return None


def _subject(record: dict[str, Any]) -> tuple:
    """What a decision is about: a later one on the same subject replaces it."""
    kind, paths = record["kind"], record["paths"]
    if kind == "not-duplicate":
        return tuple(paths)
    if kind == "not-an-issue":
        return ("not-an-issue", paths[0], record.get("finding"))
    if kind in AUDIT_KINDS:
        return ("dataset", paths[0])  # relabelled or excluded: the latest stands
    return (paths[0],)


def _key(record: dict[str, Any]) -> tuple:
    return (record["kind"], tuple(record["paths"]), record["time"])


def read_saved(model_folder: str | os.PathLike) -> Decisions:
    """The decisions saved in a model's folder (none when it has no ``decisions.json``).

    Raises
    ------
    DamagedDecisions
        ``decisions.json`` is damaged: not a regular file, not UTF-8 JSON, or not decisions.
    """
    where = Path(model_folder) / DECISIONS_FILE
    try:
        data = read_side_file(model_folder, DECISIONS_FILE)
    except ModelFormatError as exc:  # not a regular file of the folder, or far too large
        message = str(exc)
        reason = "it " + message[len(f"{where} ") :] if message.startswith(f"{where} ") else message
        raise DamagedDecisions(where, reason) from None
    if data is None:
        return Decisions()
    try:
        text = data.decode("utf-8")  # lookalike writes ASCII (names that are not UTF-8 as escapes): nothing is replaced
    except UnicodeDecodeError as exc:
        raise DamagedDecisions(where, f"not UTF-8: {exc}") from None
    return Decisions.parse(text, str(where))


def _read_or_set_aside(model_folder: str | os.PathLike) -> Decisions:
    """:func:`read_saved`, a damaged file kept aside (never overwritten later) and reported; call under the lock."""
    try:
        return read_saved(model_folder)
    except DamagedDecisions as exc:
        raise DamagedDecisions(exc.path, exc.reason, set_aside(exc.path)) from None


def set_aside_damaged(model_folder: str | os.PathLike) -> None:
    """Keep a damaged ``decisions.json`` aside as ``decisions.json.damaged-<date>-<time>``, so that a new one can start.

    Raises
    ------
    DamagedDecisions
        Naming both files, when it was damaged (nothing is raised when it is not, or no longer is).
    """
    with locked(model_folder):
        _read_or_set_aside(model_folder)
