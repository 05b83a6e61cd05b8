"""Routes about the model as a whole: health, summary, the 2-D map."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from lookalike.server import schemas
from lookalike.server.dependencies import Limits, Thumbnails, View

router = APIRouter(tags=["model"])


@router.get("/health", response_model=schemas.Health)
def health(view: View) -> dict:
    """Whether the server is up, and how many references it serves."""
    return {"status": "ok", "references": view.size}


@router.get("/summary", response_model=schemas.Summary)
def summary(view: View, thumbnails: Thumbnails, limits: Limits) -> dict:
    """The model's summary (network, metric, counts) and the server's limits."""
    return {
        **view.model.summary(output="dict"),
        "has_images": view.has_images,
        "can_query_images": view.can_query_images,
        "thumbnail_size": thumbnails.size,
        "max_upload_bytes": limits.max_bytes,
        "max_upload_pixels": limits.max_pixels,
    }


@router.get("/map", response_model=schemas.Map)
def collection_map(
    view: View,
    limit: Annotated[int, Query(ge=1, le=20000, description="most points returned (an even sample)")] = 5000,
) -> dict:
    """2-D PCA coordinates of the references' embeddings, for a map of the collection."""
    coordinates, explained = view.projection
    sample = view.map_sample(limit)
    return {
        "total": view.size,
        "explained_variance": [float(v) for v in explained],
        "index": sample.tolist(),
        "label": [view.item(int(p))["label"] for p in sample],
        "x": coordinates[sample, 0].tolist(),
        "y": coordinates[sample, 1].tolist(),
    }
