"""Routes reviewing near-duplicates: the groups, a person's decisions on them, and carrying out the discards."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from lookalike.dedup import TIERS
from lookalike.errors import DiskFull, FileMoveError, InvalidArgument, StaleModel
from lookalike.server import schemas
from lookalike.server.collection import Collection
from lookalike.server.dependencies import View
from lookalike.server.errors import error_responses
from lookalike.server.review import Review

router = APIRouter(tags=["review"])


def get_review(request: Request) -> Review:
    return request.app.state.review


Reviewer = Annotated[Review, Depends(get_review)]


@router.get("/duplicates", response_model=schemas.Duplicates, responses=error_responses(400))
def duplicates(
    view: View,
    review: Reviewer,
    threshold: Annotated[
        float | None,
        Query(ge=0, allow_inf_nan=False, description="largest distance of a link; default: measured for the model"),
    ] = None,
    k: Annotated[int, Query(ge=1, le=100, description="links looked at per reference")] = 10,
    keep: Annotated[
        Literal["resolution", "sharpest", "size", "oldest", "first"],
        Query(description="which image of a group is the keeper"),
    ] = "resolution",
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    tiers: Annotated[
        list[Literal[TIERS]] | None,  # type: ignore[valid-type]
        Query(description="only members of these tiers (repeat the parameter); all by default"),
    ] = None,
) -> dict:
    """Groups of near-duplicate references (chains of links at most ``threshold`` long), largest first.

    The groups are those of ``model.find_duplicates``, with the decisions recorded so far: each lists
    its keeper first (and why it is the keeper), then the others by distance to it.
    """
    if threshold is None:
        threshold = view.default_threshold()
    try:
        groups, facts = view.duplicate_groups(float(threshold), k, keep, tuple(sorted(set(tiers))) if tiers else None)
    except ValueError as exc:
        # Here a ValueError is a keep policy needing facts the model does not have: the client's choice, so 400.
        # (An app-wide ValueError handler would also turn the server's own bugs into 400s.)
        raise HTTPException(400, str(exc)) from None
    page = [_group(view, view.group_members(group, facts)) for group in groups[offset : offset + limit]]
    return {
        "threshold": threshold,
        "k": k,
        "keep": keep,
        "tiers": list(tiers) if tiers else list(TIERS),
        "total": len(groups),
        "offset": offset,
        "limit": limit,
        "groups": page,
        "nearest": view.nearest_distances,
        "review": review.status(view),
    }


def _group(view: Collection, members: list[dict[str, Any]]) -> dict[str, Any]:
    listed = []
    for member in members:
        mtime = member.get("mtime")
        listed.append(
            {
                **view.item(member["position"]),
                "keeper": member["keeper"],
                "action": member["action"],
                "tier": member["tier"],
                "matched": member["matched"],
                "similar_to_group": member["similar_to_group"],
                "reason": member["reason"],
                "distance": member["distance"],
                "bytes": member.get("bytes") if (member.get("bytes") or -1) >= 0 else None,
                "mtime": mtime if mtime is not None and not math.isnan(mtime) else None,
                "decision": view.decision_of(member["position"]),
            }
        )
    return {"size": len(listed), "members": listed, "keeper_reason": listed[0]["reason"]}


@router.get("/calibration", response_model=schemas.CalibrationAt, responses=error_responses(400))
def calibration(
    view: View,
    threshold: Annotated[
        float | None, Query(ge=0, allow_inf_nan=False, description="default: measured for the model")
    ] = None,
) -> dict:
    """What ``threshold`` means on this collection: the share of each kind of copy of its own photos it finds,
    and the false links it can expect (``model.calibrate_duplicates()``, computed on first request)."""
    if threshold is None:
        threshold = view.default_threshold()
    try:
        measured = view.calibration
    except ValueError as exc:  # no image files, or none readable: the model's nature, not a server bug
        raise HTTPException(400, str(exc)) from None
    values = measured.at(threshold)
    recall = {key.removeprefix("recall "): value for key, value in values.items() if key.startswith("recall ")}
    return {
        "threshold": threshold,
        "recall": recall,
        "false_links_per_pair": values["false links per pair"],
        "expected_false_links": values["expected false links"],
        "expected_lookalikes": values["expected look-alikes"],
        "summary": measured.summary(threshold),
    }


@router.get("/decisions", response_model=schemas.ReviewStatus)
def decisions(view: View, review: Reviewer) -> dict:
    """How many decisions are recorded, how many discards wait, and where an apply would move them."""
    return review.status(view)


@router.post("/decisions", response_model=schemas.ReviewStatus, responses=error_responses(400, 404, 409))
def decide(body: schemas.Decision, view: View, review: Reviewer) -> dict:
    """Record a decision on one reference: keep it, discard it as a duplicate of ``other`` (its keeper),
    mark it not a duplicate of ``other``, or clear its keep/discard decision. 409: a file that cannot be decided
    on (no image file, unreadable) or that is not the one the page listed."""
    for index, path in ((body.index, body.path), (body.other, body.other_path)):
        if index is not None and index >= view.size:
            raise HTTPException(404, f"no reference {index}: the model has {view.size}")
        # Positions change when an apply or undo moves files: a page listed before must not decide on another file.
        if index is not None and path is not None and path != view.item(index)["path"]:
            raise HTTPException(409, f"reference {index} is another file now: reload the groups")
    try:
        review.decide(view, body.action, body.index, body.other)
    except InvalidArgument as exc:
        raise HTTPException(409, str(exc)) from None
    return review.status(view)


@router.post("/apply", response_model=schemas.MoveResult, responses=error_responses(400, 409, 507))
def apply(body: schemas.Confirmation, request: Request, view: View, review: Reviewer) -> dict:
    """Move every discarded file to the server's folder for them, drop them from the model, write an undo manifest.

    409 when files cannot be moved from here: no folder for them was given when the server started, the
    model's references did not come from folders, or another process saved the model since this server loaded
    it (reload it); 507 (a full disk) or 409 when the apply stopped part-way, what was moved saved and undoable."""
    try:
        report = review.apply(view)
    except (InvalidArgument, StaleModel) as exc:  # nothing was moved
        raise HTTPException(409, str(exc)) from None
    except (DiskFull, FileMoveError) as exc:  # stopped part-way: what was moved is saved, the rest stays
        request.app.state.collection = Collection(view.model)
        done = getattr(exc, "report", None)
        detail = f"{exc} (moved {len(done.moved)} files before it; undo: {done.manifest})" if done else str(exc)
        raise HTTPException(507 if isinstance(exc, DiskFull) else 409, detail) from None
    request.app.state.collection = Collection(view.model)  # the references changed: positions, groups, map
    return _moved(report, request)


@router.post("/undo", response_model=schemas.MoveResult, responses=error_responses(400, 404, 409))
def undo(body: schemas.UndoRequest, request: Request, view: View, review: Reviewer) -> dict:
    """Put back the files of an apply on this model not undone yet (one of ``manifests`` of the status), and add them
    back to the model."""
    if body.manifest not in {str(m) for m in review.manifests()}:
        raise HTTPException(
            404, "no apply on this model left that manifest, or it was undone (lookalike undo MANIFEST undoes any)"
        )
    try:
        report = review.undo(view, body.manifest)
    except StaleModel as exc:
        raise HTTPException(409, str(exc)) from None
    request.app.state.collection = Collection(view.model)
    return _moved(report, request)


def _moved(report, request: Request) -> dict:
    view = request.app.state.collection
    return {
        "manifest": str(report.manifest) if report.manifest else None,
        "moved": report.moved,
        "skipped": [{"path": p, "reason": why} for p, why in report.skipped],
        "summary": report.summary(),
        "references": view.size,
    }
