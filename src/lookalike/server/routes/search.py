"""Routes finding neighbours: of a reference, or of an uploaded image."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Query, UploadFile

from lookalike.server import schemas
from lookalike.server.dependencies import Limits, ReferenceIndex, Slots, View
from lookalike.server.errors import error_responses
from lookalike.server.uploads import RELEASE_AFTER_PIXELS, check_upload, release_memory

router = APIRouter(tags=["search"])

K = Annotated[int, Query(ge=1, le=1000, description="number of neighbours")]
Radius = Annotated[float | None, Query(ge=0, allow_inf_nan=False, description="only neighbours at most this far")]


@router.get("/references/{index}/neighbours", response_model=schemas.Neighbours, responses=error_responses(404))
def neighbours(index: ReferenceIndex, view: View, k: K = 10, radius: Radius = None) -> dict:
    """The ``k`` nearest other references, nearest first, with their distances."""
    items = view.neighbours_of(index, k, radius)
    return {"query": view.item(index), "k": k, "radius": radius, "neighbours": items}


@router.post("/query", response_model=schemas.UploadNeighbours, responses=error_responses(400, 403, 413, 415))
async def query(
    image: Annotated[UploadFile, File(description="an image file (JPEG, PNG, WebP, GIF, BMP, TIFF)")],
    view: View,
    limits: Limits,
    slots: Slots,
    k: K = 10,
    radius: Radius = None,
) -> dict:
    """The references nearest an uploaded image (decoded one per core at a time: others wait their turn)."""
    if not view.can_query_images:
        raise HTTPException(400, "this model holds precomputed embeddings: it cannot embed an uploaded image")

    def search() -> dict:
        # Read in the slot: a waiting upload stays in its spooled file, not in memory.
        # One byte past the cap is enough to tell an upload that is too large.
        data = image.file.read(limits.max_bytes + 1)
        info = check_upload(data, limits.max_bytes, limits.max_pixels)
        try:
            items = view.neighbours_of_bytes(data, k, radius)
        finally:
            if info.width * info.height >= RELEASE_AFTER_PIXELS:
                release_memory()
        return {
            "query": None,
            "k": k,
            "radius": radius,
            "neighbours": items,
            "upload": {"width": info.width, "height": info.height, "format": info.format},
        }

    return await slots.run(search)
