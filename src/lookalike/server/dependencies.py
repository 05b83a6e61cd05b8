"""FastAPI dependencies: what the routes need from the app, and the reference a path addresses.

:func:`~lookalike.server.app.create_app` keeps one :class:`Collection`,
:class:`ThumbnailCache`, :class:`UploadLimits` and :class:`DecodeSlots` on ``app.state``; routes
declare them as parameters (``view: View``) instead of closing over them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam

from lookalike.server.collection import Collection
from lookalike.server.thumbnails import ThumbnailCache
from lookalike.server.uploads import DecodeSlots, UploadLimits


def get_collection(request: Request) -> Collection:
    """The collection served, loaded again first when its saved model changed under the server (a re-index, an
    apply or an undo from the command line): a page never acts on references another process replaced."""
    state = request.app.state
    path = state.review.model_path
    if path is not None and state.collection.model.saved_since():
        with state.reloading:
            if state.collection.model.saved_since():
                state.collection = Collection(state.collection.model.reloaded())
    return state.collection


def get_thumbnails(request: Request) -> ThumbnailCache:
    return request.app.state.thumbnails


def get_upload_limits(request: Request) -> UploadLimits:
    return request.app.state.upload_limits


def get_decode_slots(request: Request) -> DecodeSlots:
    return request.app.state.decode_slots


View = Annotated[Collection, Depends(get_collection)]
Thumbnails = Annotated[ThumbnailCache, Depends(get_thumbnails)]
Limits = Annotated[UploadLimits, Depends(get_upload_limits)]
Slots = Annotated[DecodeSlots, Depends(get_decode_slots)]


def reference_at(
    request: Request,
    view: View,
    index: Annotated[int, PathParam(ge=0, description="position of the reference (the `index` of listings)")],
) -> int:
    """The ``{index}`` of the path, or 404 when the model has no reference there."""
    if index >= view.size:
        raise HTTPException(404, f"no reference {index}: the model has {view.size} (0..{view.size - 1})")
    # Read by the ImageError handler, to name the reference whose image failed.
    request.state.reference = index
    return index


ReferenceIndex = Annotated[int, Depends(reference_at)]
