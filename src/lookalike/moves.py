"""Carrying out "discard" decisions: the discarded files are moved out of the indexed folders, with an undo manifest.

Nothing is deleted. Only files inside the folders the model was indexed from
(``References.roots``) are moved, each to the same relative path under the
destination, never overwriting; a model of URLs or tables has no such
folders, so nothing of it is moved. The destination must lie outside those
folders (a later ``sync`` would index the discarded files again).

The manifest is written before the first file moves and lists every planned
move; whether a move happened is read from the files themselves, so an apply
killed at any moment is finished by :func:`resume` or rolled back by
:func:`undo` from its manifest alone.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lookalike.core import References
from lookalike.decisions import Decisions
from lookalike.errors import InvalidArgument, ModelFormatError
from lookalike.files import file_sha256, move_without_overwrite, relative_inside, write_text_atomic

__all__ = ["MoveReport", "apply_discards", "check_destination", "plan", "read_manifest", "resume", "undo"]

MANIFEST_VERSION = 1
MANIFEST_PREFIX = "lookalike-moves-"


@dataclass
class MoveReport:
    """What an apply (or its resumption) did: the manifest, the files moved, and those left with why."""

    manifest: Path | None
    moved: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    undone: bool = False  # an undo: ``moved`` are the files back in place

    def table(self) -> pd.DataFrame:
        rows = [(p, "moved", "") for p in self.moved] + [(p, "skipped", why) for p, why in self.skipped]
        return pd.DataFrame(rows, columns=["path", "status", "reason"])

    def summary(self) -> str:
        if self.undone:
            return f"restored {len(self.moved)} files, could not restore {len(self.skipped)}"
        text = f"moved {len(self.moved)} files, skipped {len(self.skipped)}"
        return text + (f"; undo with: lookalike undo {self.manifest}" if self.manifest and self.moved else "")


def _root_of(path: str, roots: tuple[str, ...]) -> tuple[str, Path] | None:
    for root in roots:
        inside = relative_inside(path, Path(root))
        if inside is not None:
            return root, inside
    return None


def check_destination(destination: str | os.PathLike, roots: tuple[str, ...]) -> Path:
    """``destination`` resolved, or why discarded files of references from ``roots`` cannot go there."""
    if not roots:
        raise InvalidArgument(
            "this model's references came from URLs or a table, not from folders: lookalike moves no file of it"
        )
    real = Path(os.path.realpath(destination))
    for root in roots:
        if real == Path(root) or Path(root) in real.parents:
            raise InvalidArgument(
                f"the destination {destination} is inside the indexed folder {root}: "
                "discarded files would be indexed again; choose a folder outside it"
            )
        if real in Path(root).parents:
            raise InvalidArgument(f"the destination {destination} holds the indexed folder {root}: choose another")
    return real


def plan(
    references: References, decisions: Decisions, destination: str | os.PathLike
) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    """The moves the pending discard decisions ask for (source, destination, sha256), and those refused with why."""
    real = check_destination(destination, references.roots)
    paths = {os.fspath(p) for p in references.file_paths() if p is not None}
    pending = [r for r in decisions.valid() if r["kind"] == "discard"]
    discarded = {r["paths"][0] for r in pending}
    several = len(references.roots) > 1
    moves, skipped = [], []
    for record in pending:
        source, keeper = record["paths"]
        placed = _root_of(source, references.roots)
        if source not in paths:
            skipped.append((source, "not a reference of this model"))
        elif keeper in discarded:
            skipped.append((source, f"its keeper {keeper} is discarded too: one of them must stay"))
        elif placed is None:
            skipped.append((source, "outside the folders the model was indexed from"))
        else:
            root, inside = placed
            target = real / Path(root).name / inside if several else real / inside
            moves.append({"source": source, "destination": str(target), "sha256": record["sha256"][0]})
    return moves, skipped


def apply_discards(
    references: References, decisions: Decisions, destination: str | os.PathLike, model_folder: Any = None
) -> MoveReport:
    """Move every file with a pending discard decision to ``destination``, remove it from ``references``, and mark
    its decision carried out; the manifest (written first, in ``destination``) can undo it all.

    ``model_folder``, the saved model these references are, is recorded in the manifest for ``lookalike undo``;
    saving the changed model is the caller's part.
    """
    moves, skipped = plan(references, decisions, destination)
    if not moves:
        return MoveReport(None, [], skipped)
    folder = Path(os.path.realpath(destination))
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / f"{MANIFEST_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    record = {
        "version": MANIFEST_VERSION,
        "created": time.time(),
        "model": os.path.abspath(model_folder) if model_folder is not None else None,
        "roots": list(references.roots),
        "finished": False,
        "moves": moves,
    }
    write_text_atomic(manifest, json.dumps(record, indent=1))
    report = _carry_out(manifest, record, references, decisions)
    report.skipped = skipped + report.skipped
    return report


def read_manifest(manifest: str | os.PathLike) -> dict[str, Any]:
    """A manifest written by :func:`apply_discards`, checked."""
    path = Path(manifest)
    try:
        record = json.loads(path.read_text(encoding="utf-8", errors="surrogateescape"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no such manifest: {manifest}") from None
    except (ValueError, RecursionError) as exc:
        raise ModelFormatError(f"{manifest} is not a lookalike move manifest: {exc}") from None
    moves = record.get("moves") if isinstance(record, dict) else None
    if (
        not isinstance(moves, list)
        or record.get("version") != MANIFEST_VERSION
        or not all(
            isinstance(m, dict) and all(isinstance(m.get(k), str) for k in ("source", "destination")) for m in moves
        )
    ):
        raise ModelFormatError(f"{manifest} is not a lookalike move manifest (version {MANIFEST_VERSION})")
    return record


def _where(move: dict[str, str]) -> str:
    """Where a planned move's file is now: "source", "destination", "both" (linked, not yet unlinked) or "gone"."""
    at_source, at_destination = os.path.lexists(move["source"]), os.path.lexists(move["destination"])
    if at_source and at_destination:
        return "both"
    return "source" if at_source else "destination" if at_destination else "gone"


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _carry_out(manifest: Path, record: dict[str, Any], references: References, decisions: Decisions) -> MoveReport:
    report = MoveReport(manifest)
    for move in record["moves"]:
        source, destination = move["source"], move["destination"]
        where = _where(move)
        if where == "both" and _same_file(source, destination):  # killed between the link and the unlink
            os.unlink(source)
            where = "destination"
        if where == "source":
            if file_sha256(source) != move["sha256"]:
                report.skipped.append((source, "the file changed since the decision"))
                continue
            reason = move_without_overwrite(Path(source), Path(destination))
            if reason:
                report.skipped.append((source, reason))
                continue
            where = "destination"
        if where == "destination":
            report.moved.append(source)
        else:
            report.skipped.append((source, "file no longer exists" if where == "gone" else f"{destination} exists"))
    _forget_moved(report.moved, record, references, decisions)
    record["finished"] = True
    write_text_atomic(manifest, json.dumps(record, indent=1))
    return report


def _forget_moved(moved: list[str], record: dict[str, Any], references: References, decisions: Decisions) -> None:
    """Drop the moved files from the references and mark their discard decisions carried out."""
    where = {os.fspath(p): i for i, p in enumerate(references.file_paths()) if p is not None}
    positions = sorted(where[p] for p in moved if p in where)
    if positions:
        references.remove(positions)
    destinations = {m["source"]: m["destination"] for m in record["moves"]}
    decisions.mark_moved({source: destinations[source] for source in moved})


def resume(manifest: str | os.PathLike, references: References, decisions: Decisions) -> MoveReport:
    """Finish an apply that was interrupted: the moves not yet made are made, the model and decisions updated."""
    record = read_manifest(manifest)
    return _carry_out(Path(manifest), record, references, decisions)


def undo(manifest: str | os.PathLike) -> MoveReport:
    """Move every file of a manifest back where it was (never overwriting); the files restored, and those not."""
    record = read_manifest(manifest)
    report = MoveReport(Path(manifest), undone=True)
    for move in record["moves"]:
        source, destination = move["source"], move["destination"]
        where = _where(move)
        if where == "both" and _same_file(source, destination):
            os.unlink(destination)
            where = "source"
        if where == "destination":
            reason = move_without_overwrite(Path(destination), Path(source))
            if reason:
                report.skipped.append((source, reason))
                continue
            report.moved.append(source)
        elif where == "source":
            report.moved.append(source)  # never moved (an apply cut short): already in place
        else:
            report.skipped.append((source, "neither at its place nor in the destination"))
    record["undone"] = time.time()
    write_text_atomic(manifest, json.dumps(record, indent=1))
    return report
