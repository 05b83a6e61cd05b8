"""What the explorer may do about duplicates: record a person's decisions and carry out their discards.

Decisions are saved with the model when it was loaded from a folder
(``model_path``), merged under a lock with any other explorer's; otherwise
they live as long as the server. Discarded files are moved to one folder
chosen when the server starts (never one a page names), only from inside the
folders the model was indexed from, with an undo manifest; nothing is deleted.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from lookalike.dedup import MANIFEST_PREFIX, MoveReport, check_destination, read_manifest
from lookalike.errors import InvalidArgument, ModelFormatError
from lookalike.server.collection import Collection


class Review:
    """The decisions and file moves of one served model.

    Parameters
    ----------
    model_path : path, optional
        Where the model is saved: decisions and the model after a move are saved there.
    move_to : path, optional
        Where discarded files go; None: the page can record discards but not carry them out.
    """

    def __init__(self, model_path: str | os.PathLike | None, move_to: str | os.PathLike | None):
        self.model_path = Path(model_path) if model_path is not None else None
        self.move_to = Path(move_to) if move_to is not None else None
        self.written: list[Path] = []  # manifests of this server's applies (found again below when the model is saved)
        self._read: dict[Path, tuple[tuple[int, int], dict[str, Any] | None]] = {}  # manifest -> (stat, record)
        self.lock = threading.Lock()  # one change at a time: a decision, an apply or an undo

    def status(self, view: Collection) -> dict[str, Any]:
        model = view.model
        pending = [r for r in model.decisions.records if r["kind"] == "discard" and "moved_to" not in r]
        refusal = None
        if self.move_to is None:
            refusal = "the server was started without a folder for discarded files (lookalike serve --move-to DIR)"
        else:
            try:
                check_destination(self.move_to, model.roots)
            except InvalidArgument as exc:
                refusal = str(exc)
        return {
            "saved": self.model_path is not None,
            "decisions": len(model.decisions),
            "pending_discards": len(pending),
            "move_to": str(self.move_to) if self.move_to is not None else None,
            "can_apply": refusal is None,
            "apply_refusal": refusal,
            "manifests": [str(m) for m in self.manifests()],
        }

    def manifests(self) -> list[Path]:
        """The applies a page may undo, oldest first: those not undone yet of this server, and of the saved model
        (an earlier server's or the command line's, whose manifests are in the folder for discarded files), so that a
        page reloaded, or a server restarted, can still undo them."""
        candidates = set(self.written)
        if self.model_path is not None and self.move_to is not None and self.move_to.is_dir():
            candidates.update(self.move_to.glob(f"{MANIFEST_PREFIX}*.json"))
        model = os.path.abspath(self.model_path) if self.model_path is not None else None
        found = []
        for manifest in candidates:
            record = self._record(manifest)
            if (
                record is None
                or record.get("undone")
                or (manifest not in self.written and record.get("model") != model)
            ):
                continue
            found.append((record.get("created", 0), str(manifest), manifest))
        return [manifest for *_, manifest in sorted(found)]

    def _record(self, manifest: Path) -> dict[str, Any] | None:
        """The manifest read, or None if it cannot be; read again only when it changed (status comes with each key)."""
        try:
            stat = manifest.stat()
        except OSError:
            return None
        seen = (stat.st_mtime_ns, stat.st_size)
        if manifest not in self._read or self._read[manifest][0] != seen:
            try:
                self._read[manifest] = (seen, read_manifest(manifest))
            except (OSError, ModelFormatError):
                self._read[manifest] = (seen, None)
        return self._read[manifest][1]

    def decide(self, view: Collection, action: str, index: int, other: int | None) -> None:
        """Record ``action`` on the reference at ``index`` (``other``: the keeper it duplicates, or the one it is not)."""
        model = view.model
        path = view.image_path(index)
        if path is None:
            raise InvalidArgument(f"reference {index} has no image file: decisions are recorded on files")
        other_path = view.image_path(other) if other is not None else None
        if action in ("discard", "not-duplicate") and other_path is None:
            raise InvalidArgument(f"reference {other} has no image file: decisions are recorded on files")

        def change(decisions) -> None:
            if action == "keep":
                decisions.keep(path)
            elif action == "discard":
                decisions.discard(path, other_path)
            elif action == "not-duplicate":
                decisions.not_duplicate(path, other_path)
            else:
                decisions.forget(path)

        with self.lock:
            if self.model_path is not None:
                model.decisions.change_saved(self.model_path, change)
            else:
                change(model.decisions)
            view.decisions_changed()

    def decide_audit(self, view: Collection, action: str, index: int, finding: str | None, label: str | None) -> None:
        """Record a verdict on an audit finding about the reference at ``index``: ``not-an-issue`` (of ``finding``
        kind), ``relabel`` (to ``label``), ``exclude``, or ``forget`` its verdicts; saved like duplicate decisions."""
        path = view.image_path(index)
        if path is None:
            raise InvalidArgument(f"reference {index} has no image file: decisions are recorded on files")

        def change(decisions) -> None:
            if action == "not-an-issue":
                decisions.not_an_issue(path, finding)
            elif action == "relabel":
                decisions.relabel(path, label)
            elif action == "exclude":
                decisions.exclude(path)
            else:
                decisions.forget_verdicts(path)

        with self.lock:
            if self.model_path is not None:
                view.model.decisions.change_saved(self.model_path, change)
            else:
                change(view.model.decisions)

    def apply(self, view: Collection) -> MoveReport:
        """Move the discarded files; refused (:class:`~lookalike.errors.StaleModel`, nothing moved) when another
        process saved the model since this server loaded it, whose references a save from here would drop."""
        if self.move_to is None:
            raise InvalidArgument(self.status(view)["apply_refusal"])
        with self.lock:
            report = view.model.apply_decisions(self.move_to, path=self.model_path)
            if report.manifest is not None:
                self.written.append(report.manifest)
        return report

    def undo(self, view: Collection, manifest: str) -> MoveReport:
        """Undo an apply (the route checks ``manifest`` is one of :meth:`manifests`)."""
        with self.lock:
            return view.model.undo_moves(manifest, path=self.model_path, verbose=False)
