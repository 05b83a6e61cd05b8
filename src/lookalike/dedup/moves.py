"""Carrying out "discard" decisions: each discarded file is moved to a folder, moved to the trash, or (asked for
explicitly) deleted, with an undo manifest written before anything changes.

Only files inside the folders the model was indexed from (``References.roots``)
are acted on; a model of URLs or tables has no such folders, so nothing of it
is touched. A folder the files go to (and where the manifest is written) must
lie outside those folders (a later ``sync`` would index the discarded files
again): :func:`check_destination` is the one check of it.

Every file moves through :func:`lookalike.store.safemove.move_file` (no link followed,
nothing overwritten, copies across file systems verified before the source
goes). The manifest lists every planned action with the file's SHA-256; where
the bytes are is read from the files themselves and decided by content, so an
apply killed at any moment is finished by :func:`resume` or rolled back by
:func:`undo` from the manifest alone. An error a user can cause (a full disk, a
read-only disk, no permission, a file-size limit) stops the run: what was done
is kept and recorded, the file being moved stays whole at its place, and the
report's ``stopped`` says why.

Modes (one per apply, recorded per file in the manifest):

- ``"move"``: to ``DESTINATION/<path relative to its indexed folder>``;
- ``"trash"``: to the system trash (:mod:`lookalike.store.trash`, with its ``.trashinfo``);
- ``"permanently"``: the file is unlinked once the manifest records it; it cannot be restored.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lookalike.config import data_dir
from lookalike.dedup.decisions import Decisions
from lookalike.errors import DiskFull, FileMoveError, InvalidArgument, LookalikeError, ModelFormatError, MoveRefused
from lookalike.references.core import References
from lookalike.store import trash
from lookalike.store.files import relative_inside, reporting_full_disk, write_text_atomic
from lookalike.store.safemove import cause_of, file_digest, kill_point, move_file, partial_copies, remove_partial

__all__ = [
    "MODES",
    "MoveReport",
    "apply_discards",
    "check_destination",
    "manifests_folder",
    "plan",
    "read_manifest",
    "resume",
    "undo",
    "unfinished",
]

MANIFEST_VERSION = 2  # 2: a mode per file ("move", "trash", "permanently"), "folder", per-file "state"
MANIFEST_PREFIX = "lookalike-moves-"
MODES = ("move", "trash", "permanently")
_DONE = {"move": "moved", "trash": "moved to the trash", "permanently": "deleted permanently"}


@dataclass
class MoveReport:
    """What an apply (or its resumption, or an undo) did.

    ``moved``: the files that left their place (moved, trashed or deleted, by ``mode``); by an undo, the files back
    in place. ``skipped``: the files left as they were, with why. ``deleted``: by an undo, the files deleted
    permanently, which cannot be restored. ``stopped``: the error that stopped the run early (a full disk, a
    read-only disk...), or None; the files after it were not touched.
    """

    manifest: Path | None
    moved: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    undone: bool = False
    mode: str = "move"
    deleted: list[str] = field(default_factory=list)
    stopped: LookalikeError | None = None

    def table(self) -> pd.DataFrame:
        status = "restored" if self.undone else _DONE[self.mode]
        rows = [(p, status, "") for p in self.moved] + [(p, "skipped", why) for p, why in self.skipped]
        rows += [(p, "not restorable", "deleted permanently") for p in self.deleted]
        return pd.DataFrame(rows, columns=["path", "status", "reason"])

    def summary(self) -> str:
        stopped = f"; stopped early: {self.stopped}" if self.stopped is not None else ""
        if self.undone:
            text = f"restored {len(self.moved)} files, could not restore {len(self.skipped)}"
            if self.deleted:
                text += f"; {len(self.deleted)} were deleted permanently and cannot be restored"
            return text + stopped
        text = f"{_DONE[self.mode]} {len(self.moved)} files, skipped {len(self.skipped)}" + stopped
        if self.mode == "permanently":
            return text
        return text + (f"; undo with: lookalike undo {self.manifest}" if self.manifest and self.moved else "")


def _root_of(path: str, roots: tuple[str, ...]) -> tuple[str, Path] | None:
    for root in roots:
        inside = relative_inside(path, Path(root))
        if inside is not None:
            return root, inside
    return None


def _check_roots(roots: tuple[str, ...]) -> None:
    if not roots:
        raise InvalidArgument(
            "this model's references came from URLs or a table, not from folders: lookalike moves no file of it"
        )


def check_destination(destination: str | os.PathLike, roots: tuple[str, ...]) -> Path:
    """``destination`` resolved, or why discarded files of references from ``roots`` cannot go there.

    The one check of a folder that files are moved to (``apply``, ``dedup --move-to``, the explorer): it must
    lie outside every indexed folder and hold none of them, and be a folder if it exists.
    """
    _check_roots(roots)
    real = Path(os.path.realpath(destination))
    for root in roots:
        if real == Path(root) or Path(root) in real.parents:
            raise InvalidArgument(
                f"the destination {destination} is inside the indexed folder {root}: "
                "discarded files would be indexed again; choose a folder outside it"
            )
        if real in Path(root).parents:
            raise InvalidArgument(f"the destination {destination} holds the indexed folder {root}: choose another")
    if os.path.exists(real) and not os.path.isdir(real):
        raise InvalidArgument(f"the destination {destination} is a file, not a folder")
    return real


def manifests_folder() -> Path:
    """Where an apply that moves files to no folder of its own (trash, permanent delete) writes its manifest."""
    return data_dir() / "moves"


def _check_mode(mode: str, destination: Any) -> None:
    if mode not in MODES:
        raise InvalidArgument(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "move" and destination is None:
        raise InvalidArgument("moving discarded files needs a destination folder (or mode='trash')")
    if mode == "trash":
        trash.check_supported()


def plan(
    references: References, decisions: Decisions, destination: str | os.PathLike | None, mode: str = "move"
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The actions the pending discard decisions ask for (source, destination, sha256, mode), and those refused
    with why. A trashed file's destination is chosen (reserved in the trash) when the apply starts."""
    _check_mode(mode, destination)
    _check_roots(references.roots)
    real = check_destination(destination, references.roots) if destination is not None else None
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
            target = None
            if mode == "move":
                root, inside = placed
                target = str(real / Path(root).name / inside if several else real / inside)
            moves.append({"source": source, "destination": target, "sha256": record["sha256"][0], "mode": mode})
    return moves, skipped


def apply_discards(
    references: References,
    decisions: Decisions,
    destination: str | os.PathLike | None = None,
    model_folder: Any = None,
    *,
    mode: str = "move",
) -> MoveReport:
    """Carry out every pending discard decision, remove those files from ``references`` and mark their decisions
    carried out; the manifest, written before anything changes, can undo it all (but permanent deletions).

    Parameters
    ----------
    references : References
        The references the decisions are about (a saved model's, or one built in memory); only files inside
        its ``roots`` are touched.
    decisions : Decisions
        Their ``discard`` decisions are carried out (a file changed since its decision is skipped).
    destination : path, optional
        ``mode="move"``: where the files go, each at its path relative to its indexed folder (required). Other
        modes: where the manifest is written (default :func:`manifests_folder`). Outside every root.
    model_folder : path, optional
        The saved model these references are, recorded in the manifest for ``lookalike undo``; saving the
        changed model (and holding its folder's lock meanwhile) is the caller's part.
    mode : {"move", "trash", "permanently"}
        Move to ``destination``, to the system trash, or delete (only when asked for explicitly).

    Returns
    -------
    MoveReport
        What was done; ``stopped`` holds the error (:class:`~lookalike.errors.DiskFull`,
        :class:`~lookalike.errors.FileMoveError`) that stopped it early, if any: the caller saves what was
        done, then raises it.

    Examples
    --------
    >>> decisions = Decisions()  # doctest: +SKIP
    >>> decisions.discard("photos/IMG_1 (copy).jpg", keeper="photos/IMG_1.jpg")  # doctest: +SKIP
    >>> apply_discards(model.core, decisions, mode="trash").summary()  # doctest: +SKIP
    'moved to the trash 1 files, skipped 0; undo with: lookalike undo ~/.local/share/lookalike/moves/...json'
    """
    moves, skipped = plan(references, decisions, destination, mode)
    if not moves:
        return MoveReport(None, [], skipped, mode=mode)
    folder = check_destination(destination, references.roots) if destination is not None else manifests_folder()
    record = {
        "version": MANIFEST_VERSION,
        "created": time.time(),
        "model": os.path.abspath(model_folder) if model_folder is not None else None,
        "roots": list(references.roots),
        "mode": mode,
        "folder": str(folder) if mode == "move" else None,
        "finished": False,
        "stopped": None,
        "moves": moves,
    }
    manifest = folder / f"{MANIFEST_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{os.urandom(3).hex()}.json"
    try:
        with reporting_full_disk(folder):
            folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(manifest, json.dumps(record, indent=1))
    except OSError as exc:
        if isinstance(exc, DiskFull):
            raise
        cause = cause_of(exc)
        raise FileMoveError(f"files to {folder}", f"the undo manifest cannot be written there ({cause})") from exc
    kill_point("after-manifest")
    report = _carry_out(manifest, record, references, decisions)
    report.skipped = skipped + report.skipped
    return report


def read_manifest(manifest: str | os.PathLike) -> dict[str, Any]:
    """A manifest written by :func:`apply_discards` (version 1 or 2), checked; version 1 is read as moves."""
    path = Path(manifest)
    try:
        record = json.loads(path.read_text(encoding="utf-8", errors="surrogateescape"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no such manifest: {manifest}") from None
    except (ValueError, RecursionError) as exc:
        raise ModelFormatError(f"{manifest} is not a lookalike move manifest: {exc}") from None
    moves = record.get("moves") if isinstance(record, dict) else None
    if not isinstance(moves, list) or record.get("version") not in (1, MANIFEST_VERSION):
        raise ModelFormatError(f"{manifest} is not a lookalike move manifest (version 1 or {MANIFEST_VERSION})")
    for move in moves:
        if isinstance(move, dict) and record["version"] == 1:
            move.setdefault("mode", "move")
        if not (
            isinstance(move, dict)
            and isinstance(move.get("source"), str)
            and move.get("mode") in MODES
            and isinstance(move.get("destination"), (str, type(None)))
            and (move["destination"] is not None or move["mode"] != "move")
            and isinstance(move.get("sha256"), (str, type(None)))
            and isinstance(move.get("trashinfo"), (str, type(None)))
        ):
            raise ModelFormatError(f"{manifest} holds a malformed move: {str(move)[:200]}")
    if not isinstance(record.get("folder"), (str, type(None))) or not isinstance(record.get("roots", []), list):
        raise ModelFormatError(f"{manifest} is not a lookalike move manifest: malformed folder or roots")
    return record


# ------------------------------------------------------------------------ where the bytes are


@dataclass(frozen=True)
class _Look:
    """What is at a path: ``"absent"``, ``"link"``, ``"special"`` (not a regular file), ``"ours"`` (the regular
    file with the bytes decided on) or ``"other"`` (a regular file with other bytes)."""

    kind: str
    found: os.stat_result | None = None

    @property
    def exists(self) -> bool:
        return self.kind != "absent"

    def words(self) -> str:
        return {"link": "a symbolic link", "special": "not a regular file", "other": "another file"}.get(
            self.kind, self.kind
        )


def _look(path: str | os.PathLike | None, sha256: str | None, same_as: _Look | None = None) -> _Look:
    """What is at ``path``, judged by content: the same inode as ``same_as`` (ours) needs no reading."""
    if path is None:
        return _Look("absent")
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return _Look("absent")
    except OSError:
        return _Look("special")
    if stat.S_ISLNK(found.st_mode):
        return _Look("link", found)
    if not stat.S_ISREG(found.st_mode):
        return _Look("special", found)
    known = same_as.found if same_as is not None and same_as.kind == "ours" else None
    if known is not None and (known.st_dev, known.st_ino) == (found.st_dev, found.st_ino):
        return _Look("ours", found)
    if sha256 is None:  # a manifest without digests: a lone regular file is the one moved, a second one is not
        return _Look("other" if same_as is not None and same_as.exists else "ours", found)
    return _Look("ours" if file_digest(path) == sha256 else "other", found)


def _complete_partial(destination: str | None, sha256: str | None) -> Path | None:
    """A copy towards ``destination`` left whole by an interrupted move (checked by content), if any."""
    if destination is None or sha256 is None:
        return None
    return next((p for p in partial_copies(destination) if file_digest(p) == sha256), None)


def _clear_partials(*paths: str | None) -> None:
    for path in paths:
        if path is not None:
            for partial in partial_copies(path):
                remove_partial(partial)


def _unlink_copy(path: str) -> None:
    """Remove a second copy of bytes that are safe at another place (checked by the caller), flushing its folder."""
    os.unlink(path)
    fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _destination_root(record: dict[str, Any], move: dict[str, Any]) -> str | None:
    """The folder below which a move's destination folders are made without following links."""
    if move["mode"] == "trash":
        return os.path.dirname(move["destination"])
    folder = record.get("folder")
    return folder if folder and relative_inside(move["destination"], Path(folder)) is not None else None


def _finish(record: dict[str, Any], move: dict[str, Any]) -> None:
    """Bring one file to where the manifest sends it, from wherever its bytes are; MoveRefused if it must stay."""
    source, destination, sha256 = move["source"], move["destination"], move.get("sha256")
    at_source = _look(source, sha256)
    if move["mode"] == "permanently":
        if at_source.kind == "ours":
            _unlink_copy(source)
        elif at_source.exists:
            raise MoveRefused(f"{source} is {at_source.words()} now, not the file decided on: left as it is")
        return
    if destination is None:
        raise MoveRefused(f"no place in the trash was reserved for {source}")
    there = _look(destination, sha256, same_as=at_source)
    if there.kind == "ours":
        if at_source.kind == "ours":  # killed between the copy (or link) and the unlink: the destination is whole
            _unlink_copy(source)
        _clear_partials(destination)
        return
    if at_source.kind == "ours":
        _clear_partials(destination)
        if there.exists:
            raise MoveRefused(f"{destination} exists and is {there.words()}, not this file: {source} stays")
        move_file(source, destination, sha256, root=_destination_root(record, move))
        return
    partial = _complete_partial(destination, sha256)
    if partial is not None and not there.exists:
        move_file(partial, destination, sha256, root=_destination_root(record, move))
        _clear_partials(destination)
        return
    _clear_partials(destination)
    if at_source.kind in ("absent",):
        raise MoveRefused(
            "file no longer exists" + (f" (and {destination} is {there.words()})" if there.exists else "")
        )
    raise MoveRefused(f"{source} is {at_source.words()} now, not the file decided on: left as it is")


def _reserve_in_trash(manifest: Path, record: dict[str, Any]) -> None:
    """Reserve a name in the trash for each trashed file (its ``.trashinfo``) and record them in the manifest."""
    for move in record["moves"]:
        if move["mode"] != "trash" or move["destination"] is not None:
            continue
        _remove_unrecorded_reservations(move)
        try:
            folder, _ = trash.trash_folder(move["source"])
            inside = _root_of(str(folder / "files" / "name"), tuple(record.get("roots", [])))
            if inside is not None:
                raise MoveRefused(
                    f"the trash {folder} is inside the indexed folder {inside[0]}: the file would be indexed again"
                )
            files, info = trash.reserve(move["source"])
        except (MoveRefused, FileNotFoundError) as exc:
            move["refused"] = str(exc)
            continue
        except OSError as exc:
            raise FileMoveError(move["source"], f"cannot reserve a name in the trash ({cause_of(exc)})") from exc
        move["destination"], move["trashinfo"] = str(files), str(info)
        kill_point("after-trashinfo")
    write_text_atomic(manifest, json.dumps(record, indent=1))


def _remove_unrecorded_reservations(move: dict[str, Any]) -> None:
    """Remove ``.trashinfo`` files an apply killed while reserving wrote for this file but never recorded."""
    try:
        folder, _ = trash.trash_folder(move["source"])
    except (OSError, LookalikeError):
        return
    for info in (folder / "info").glob(f"*{trash.INFO_SUFFIX}"):
        trashed = folder / "files" / info.name[: -len(trash.INFO_SUFFIX)]
        if not os.path.lexists(trashed) and trash.original_path(info) == os.path.abspath(move["source"]):
            info.unlink(missing_ok=True)


def _carry_out(manifest: Path, record: dict[str, Any], references: References, decisions: Decisions) -> MoveReport:
    report = MoveReport(manifest, mode=record.get("mode", "move"))
    try:
        if any(m["mode"] == "trash" and m["destination"] is None and "refused" not in m for m in record["moves"]):
            _reserve_in_trash(manifest, record)
        for move in record["moves"]:
            if report.stopped is not None:
                move["state"] = "not started (stopped)"
                continue
            try:
                if "refused" in move:
                    raise MoveRefused(move["refused"])
                _finish(record, move)
                report.moved.append(move["source"])
                move["state"] = "done"
            except MoveRefused as exc:
                report.skipped.append((move["source"], str(exc)))
                move["state"] = f"skipped: {exc}"
                if move.get("trashinfo") and not os.path.lexists(move["destination"]):
                    Path(move["trashinfo"]).unlink(missing_ok=True)  # the name reserved for it is not needed
            except (DiskFull, FileMoveError) as exc:
                report.stopped = exc
                move["state"] = f"stopped: {exc}"
    except (DiskFull, FileMoveError) as exc:  # reserving names in the trash
        report.stopped = exc
    _forget_moved(report.moved, record, references, decisions)
    record["finished"] = report.stopped is None
    record["stopped"] = str(report.stopped) if report.stopped is not None else None
    _record(manifest, record)
    return report


def _record(manifest: Path, record: dict[str, Any]) -> None:
    """Rewrite the manifest with what happened; if that fails (its disk is full), the first one still lists every
    planned action, and resume and undo read what happened from the files."""
    with contextlib.suppress(OSError):
        write_text_atomic(manifest, json.dumps(record, indent=1))


def _forget_moved(moved: list[str], record: dict[str, Any], references: References, decisions: Decisions) -> None:
    """Drop the files acted on from the references and mark their discard decisions carried out."""
    where = {os.fspath(p): i for i, p in enumerate(references.file_paths()) if p is not None}
    positions = sorted(where[p] for p in moved if p in where)
    if positions:
        references.remove(positions)
    destinations = {m["source"]: m["destination"] or "" for m in record["moves"]}
    decisions.mark_moved({source: destinations[source] for source in moved})


def unfinished(folder: str | os.PathLike | None, roots: tuple[str, ...]) -> list[Path]:
    """Manifests in ``folder`` (default :func:`manifests_folder`) of applies on files under ``roots`` that were
    cut short, oldest first. A manifest that cannot be read is not one of them."""
    folder = Path(folder) if folder is not None else manifests_folder()
    found = []
    for manifest in sorted(folder.glob(f"{MANIFEST_PREFIX}*.json")) if folder.is_dir() else []:
        try:
            record = read_manifest(manifest)
        except (OSError, ModelFormatError):
            continue
        if not record.get("finished") and not record.get("undone") and set(record.get("roots", [])) & set(roots):
            found.append((record.get("created", 0), manifest))
    return [manifest for _, manifest in sorted(found)]


def resume(manifest: str | os.PathLike, references: References, decisions: Decisions) -> MoveReport:
    """Finish an apply that was interrupted: the actions not yet done are done, the references and decisions
    updated; partial copies it left are removed."""
    record = read_manifest(manifest)
    return _carry_out(Path(manifest), record, references, decisions)


def _restore(record: dict[str, Any], move: dict[str, Any], report: MoveReport) -> None:
    """Put one file back at its place from wherever its bytes are; never over something that is not it."""
    source, destination, sha256 = move["source"], move["destination"], move.get("sha256")
    at_source = _look(source, sha256)
    if move["mode"] == "permanently":
        if at_source.kind == "ours":  # the apply stopped before deleting it
            report.moved.append(source)
        else:
            report.deleted.append(source)
        return
    there = _look(destination, sha256, same_as=at_source)
    if at_source.kind == "ours":
        if there.kind == "ours":  # both places: the apply was cut between the copy (or link) and the unlink
            _unlink_copy(destination)
        _clear_partials(destination, source)
        _forget_trashinfo(move)
        report.moved.append(source)
        return
    partial = _complete_partial(destination, sha256)
    if at_source.exists:
        kept = destination if there.kind == "ours" else partial
        report.skipped.append(
            (source, f"{source} is {at_source.words()} now: the file is not put over it, it stays at {kept}")
        )
        return
    holder = destination if there.kind == "ours" else partial or _complete_partial(source, sha256)
    if holder is None:
        _clear_partials(destination, source)
        where = "in the trash" if move["mode"] == "trash" else "in the destination"
        report.skipped.append((source, f"neither at its place nor {where} ({destination})"))
        return
    move_file(holder, source, sha256, root=_source_root(record, source))
    _clear_partials(destination, source)
    _forget_trashinfo(move)
    report.moved.append(source)


def _source_root(record: dict[str, Any], source: str) -> str | None:
    placed = _root_of(source, tuple(r for r in record.get("roots", []) if isinstance(r, str)))
    return placed[0] if placed is not None else None


def _forget_trashinfo(move: dict[str, Any]) -> None:
    if move["mode"] == "trash":
        if move.get("trashinfo"):
            Path(move["trashinfo"]).unlink(missing_ok=True)
        else:
            _remove_unrecorded_reservations(move)


def undo(manifest: str | os.PathLike) -> MoveReport:
    """Put every file of a manifest back where it was, from wherever its bytes are (its destination, a complete
    copy an interrupted move left, or still in place), never over anything that is not that file (a link
    included: the file then stays where it is, and the report says where). Trashed files lose their
    ``.trashinfo``; permanently deleted ones are reported as not restorable."""
    record = read_manifest(manifest)
    report = MoveReport(Path(manifest), undone=True, mode=record.get("mode", "move"))
    for move in record["moves"]:
        try:
            _restore(record, move, report)
        except MoveRefused as exc:
            report.skipped.append((move["source"], str(exc)))
        except (DiskFull, FileMoveError) as exc:
            report.stopped = exc
            break
    record["undone"] = time.time()
    _record(Path(manifest), record)
    return report
