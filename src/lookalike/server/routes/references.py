"""Routes listing the references and serving their thumbnails."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from lookalike.server import schemas
from lookalike.server.dependencies import ReferenceIndex, Thumbnails, View
from lookalike.server.errors import error_responses

router = APIRouter(tags=["references"])

#: What the v= of a thumbnail's address is (shared by the Match view's thumbnails).
VERSION = (
    "the file's version as listed: browsers may keep the thumbnail for good; 409 when the file changed or "
    "another file is at that position now"
)


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
    version: Annotated[str | None, Query(alias="v", max_length=64, description=VERSION)] = None,
) -> Response:
    """An upright JPEG thumbnail of the reference (made once, then served from the disk cache).

    Pages put the file's ``version`` (of listings) in the address: browsers keep that address for good, as it
    cannot show another file; without it they must ask again each time, since a position holds another
    file after an apply or undo. A stale page gets a 409, never another image.
    """
    path = view.image_path(index)
    if path is None:
        raise HTTPException(404, f"reference {index} has no image file (it was built from in-memory images)")
    if expected is not None and expected != view.item(index)["path"]:
        raise HTTPException(409, f"reference {index} is another file now: reload the page")
    return thumbnails.response(path, version)  # an unreadable image is a 404 (see errors.unreadable_image)
