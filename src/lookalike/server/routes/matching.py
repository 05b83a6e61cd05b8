"""Routes of the Match view: the one-to-one pairs of the served model with a second set, and its images."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from lookalike.server import schemas
from lookalike.server.dependencies import Thumbnails, View
from lookalike.server.errors import error_responses
from lookalike.server.matching import MatchedSet
from lookalike.server.routes.references import VERSION

router = APIRouter(tags=["match"])


def get_matched(request: Request) -> MatchedSet:
    matched = request.app.state.matched
    if matched is None:
        raise HTTPException(404, "this server matches no second set: start it with lookalike serve MODEL --match SET")
    return matched


Matched = Annotated[MatchedSet, Depends(get_matched)]


@router.get("/match", response_model=schemas.MatchPage, responses=error_responses(400, 404))
def match_page(
    view: View,
    matched: Matched,
    threshold: Annotated[
        float | None, Query(ge=0, allow_inf_nan=False, description="largest distance of a pair; default: the largest")
    ] = None,
    show: Annotated[
        Literal["pairs", "unmatched-a", "unmatched-b"], Query(description="the pairs, or one side's unmatched")
    ] = "pairs",
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict:
    """Each reference paired with at most one image of the other set (closest pairs first), or those left alone."""
    if threshold is None:
        threshold = matched.threshold
    if threshold > matched.threshold:
        raise HTTPException(400, f"the pairs were found up to {matched.threshold:g}: ask for a threshold up to it")
    return matched.page(view, threshold, show, offset, limit)


@router.get(
    "/match/other/{index}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **error_responses(404)},
)
def other_thumbnail(
    matched: Matched,
    thumbnails: Thumbnails,
    index: Annotated[int, PathParam(ge=0, description="position in the other set")],
    version: Annotated[str | None, Query(alias="v", max_length=64, description=VERSION)] = None,
) -> Response:
    """An upright JPEG thumbnail of an image of the other set (kept for good by browsers with its ``version``:
    a server restarted on the same port with another set lists other versions, hence other addresses)."""
    if index >= matched.other.size:
        raise HTTPException(404, f"no image {index} in the other set: it has {matched.other.size}")
    path = matched.other.image_path(index)
    if path is None:
        raise HTTPException(404, f"image {index} of the other set has no file")
    return thumbnails.response(path, version)
