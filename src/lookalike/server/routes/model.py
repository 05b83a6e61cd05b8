"""Routes about the model as a whole: health, summary, the 2-D map."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from lookalike.errors import LookalikeError
from lookalike.server import schemas
from lookalike.server.collection import CLUSTER
from lookalike.server.dependencies import Limits, Thumbnails, View

router = APIRouter(tags=["model"])

#: Most points one map request returns: the whole collection up to here (about 5 MB of JSON), an even sample beyond.
MAX_MAP_POINTS = 100_000


@router.get("/health", response_model=schemas.Health)
def health(view: View) -> dict:
    """Whether the server is up, and how many references it serves."""
    return {"status": "ok", "references": view.size}


@router.get("/summary", response_model=schemas.Summary)
def summary(request: Request, view: View, thumbnails: Thumbnails, limits: Limits) -> dict:
    """The model's summary (network, metric, counts) and the server's limits."""
    return {
        **view.model.summary(output="dict"),
        "has_images": view.has_images,
        "can_query_images": view.can_query_images,
        "has_match": request.app.state.matched is not None,
        "thumbnail_size": thumbnails.size,
        "max_upload_bytes": limits.max_bytes,
        "max_upload_pixels": limits.max_pixels,
    }


@router.get("/map", response_model=schemas.Map)
def collection_map(
    view: View,
    limit: Annotated[
        int, Query(ge=1, le=MAX_MAP_POINTS, description="most points returned (an even sample of the references)")
    ] = 5000,
    method: Annotated[
        Literal["auto", "tsne", "pca"],
        Query(description="auto: the model's saved map, else t-SNE (openTSNE) up to 20,000 references, else PCA"),
    ] = "auto",
    color: Annotated[
        str, Query(description='"cluster", "folder" or a column of the references (see columns)')
    ] = CLUSTER,
) -> dict:
    """A 2-D map of the references where images that look alike lie close together, with what colours it.

    The layout is the one saved with the model (``lookalike map MODEL``) while it
    covers the references, else computed on the first request and kept.
    """
    try:
        view.check_colouring(color)  # before any layout is computed
        layout = view.map_layout(method)
    except LookalikeError as exc:  # a bad colour column, t-SNE without the map extra or with too few references
        raise HTTPException(422, str(exc)) from None
    sample = view.map_sample(limit)
    items = [view.item(int(p)) for p in sample]
    return {
        "total": view.size,
        "method": layout.method,
        "saved": layout.saved,
        "seconds": layout.seconds,
        "note": layout.note,
        "explained_variance": list(layout.explained or ()),
        "clusters": layout.cluster_count,
        "columns": list(view.colourings),
        "index": sample.tolist(),
        "label": [view.label(int(p)) for p in sample],
        "path": [item["path"] for item in items],
        "version": [item["version"] for item in items],
        "x": layout.coordinates[sample, 0].tolist(),
        "y": layout.coordinates[sample, 1].tolist(),
        "cluster": layout.clusters[sample].tolist(),
        "color": view.map_colours(color, sample, layout),
    }
