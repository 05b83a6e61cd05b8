"""Routes listing the references and serving their thumbnails."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from lookalike.server import schemas
from lookalike.server.dependencies import ReferenceIndex, Thumbnails, View
from lookalike.server.errors import error_responses

router = APIRouter(tags=["references"])


@router.get("/references", response_model=schemas.ReferencePage)
def references(
    view: View, offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=500)] = 60
) -> dict:
    """One page of references, in model order."""
    return {"total": view.size, "offset": offset, "limit": limit, "items": view.page(offset, limit)}


# Declared before /references/{index}, which would otherwise take "lookup" for an index.
@router.get("/references/lookup", response_model=schemas.Reference, responses=error_responses(404))
def lookup(view: View, label: Annotated[str, Query(max_length=4096, description="a reference label, as text")]) -> dict:
    """The reference with this label."""
    position = view.find_label(label)
    if position is None:
        raise HTTPException(404, f"no reference has the label {label!r}")
    return view.item(position)


@router.get("/references/{index}", response_model=schemas.Reference, responses=error_responses(404))
def reference(index: ReferenceIndex, view: View) -> dict:
    """One reference."""
    return view.item(index)


@router.get(
    "/references/{index}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **error_responses(404, 409)},
)
def thumbnail(
    index: ReferenceIndex,
    view: View,
    thumbnails: Thumbnails,
    expected: Annotated[
        str | None,
        Query(
            alias="path",
            max_length=4096,
            description="the reference's path as listed: 409 when that position holds another file now "
            "(an apply or undo changed the positions)",
        ),
    ] = None,
) -> Response:
    """An upright JPEG thumbnail of the reference (made once, then served from the disk cache).

    Browsers keep it a day by its address: pages put the path in the address, so that a position that
    holds another file after an apply or undo is another address, and a stale page gets a 409, not another image.
    """
    path = view.image_path(index)
    if path is None:
        raise HTTPException(404, f"reference {index} has no image file (it was built from in-memory images)")
    if expected is not None and expected != view.item(index)["path"]:
        raise HTTPException(409, f"reference {index} is another file now: reload the page")
    return thumbnails.response(path)  # an unreadable image is a 404 (see errors.unreadable_image)
