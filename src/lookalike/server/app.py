"""The FastAPI application: the REST API under ``/api`` and the web page at ``/``."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from lookalike.config import cache_dir
from lookalike.ingest.decode import ImageError
from lookalike.server import schemas
from lookalike.server.collection import Collection
from lookalike.server.security import BodyLimit, SecurityHeaders, bearer_guard
from lookalike.server.thumbnails import ThumbnailCache
from lookalike.server.uploads import UploadError, check_upload

STATIC = files("lookalike.server") / "static"
#: Defaults of :func:`create_app`: 20 MB uploads, 40 megapixels decoded.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
#: Slack for the multipart envelope around the file, so a file of exactly the cap still fits.
MULTIPART_SLACK = 64 * 1024

Index = Annotated[int, PathParam(ge=0, description="position of the reference (the `index` of listings)")]
K = Annotated[int, Query(ge=1, le=1000, description="number of neighbours")]
Radius = Annotated[float | None, Query(ge=0, allow_inf_nan=False, description="only neighbours at most this far")]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses, all shaped ``{"detail": "..."}``."""
    return {status: {"model": schemas.Error} for status in statuses}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("query", "path", "body"))
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def create_app(
    model_or_path: Any,
    token: str | None = None,
    cors: list[str] | None = None,
    allowed_hosts: list[str] | None = None,
    thumbnail_dir: str | os.PathLike | None = None,
    thumbnail_size: int = 256,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_upload_pixels: int = MAX_UPLOAD_PIXELS,
) -> FastAPI:
    """The explorer's web application for a model.

    Parameters
    ----------
    model_or_path : lookalike.ImageSimilarityModel or path
        The model, or a directory saved by ``model.save``.
    token : str, optional
        When given, every ``/api`` request must send ``Authorization: Bearer <token>``.
    cors : list of str, optional
        Origins allowed to call the API from other pages. None: no CORS headers at all.
    allowed_hosts : list of str, optional
        Host headers to answer (a guard against DNS rebinding); None answers any.
    thumbnail_dir : path, optional
        Where thumbnails are cached; default ``<lookalike cache>/thumbnails``.
    thumbnail_size : int, default 256
        Longest side of a thumbnail.
    max_upload_bytes : int, default 20 MB
        Largest uploaded image; larger requests get 413.
    max_upload_pixels : int, default 40 000 000
        Largest uploaded width x height (decompression-bomb guard); larger get 413.

    Examples
    --------
    >>> import uvicorn                                   # doctest: +SKIP
    >>> uvicorn.run(create_app("photos.lookalike"))      # doctest: +SKIP
    """
    if isinstance(model_or_path, (str, os.PathLike)):
        from lookalike.model import load_model

        model = load_model(model_or_path)
    else:
        model = model_or_path
    view = Collection(model)
    thumbnails = ThumbnailCache(thumbnail_dir or cache_dir() / "thumbnails", size=thumbnail_size)

    app = FastAPI(
        title="lookalike",
        summary="Browse an image-similarity model, find neighbours, search by upload, review near-duplicates.",
        version=_version(),
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    guard = [Depends(bearer_guard(token))] if token else []
    api = APIRouter(prefix="/api", dependencies=guard, responses=_errors(401, 422) if token else _errors(422))

    def reference_at(index: int) -> int:
        if index >= view.size:
            raise HTTPException(404, f"no reference {index}: the model has {view.size} (0..{view.size - 1})")
        return index

    @api.get("/health", response_model=schemas.Health, tags=["model"])
    def health() -> dict:
        """Whether the server is up, and how many references it serves."""
        return {"status": "ok", "references": view.size}

    @api.get("/summary", response_model=schemas.Summary, tags=["model"])
    def summary() -> dict:
        """The model's summary (network, metric, counts) and the server's limits."""
        return {
            **model.summary(output="dict"),
            "has_images": view.has_images,
            "can_query_images": model.model_name is not None,
            "thumbnail_size": thumbnails.size,
            "max_upload_bytes": max_upload_bytes,
            "max_upload_pixels": max_upload_pixels,
        }

    @api.get("/references", response_model=schemas.ReferencePage, tags=["references"])
    def references(offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=500)] = 60) -> dict:
        """One page of references, in model order."""
        return {"total": view.size, "offset": offset, "limit": limit, "items": view.page(offset, limit)}

    @api.get("/references/lookup", response_model=schemas.Reference, responses=_errors(404), tags=["references"])
    def lookup(label: Annotated[str, Query(max_length=4096, description="a reference label, as text")]) -> dict:
        """The reference with this label."""
        position = view.find_label(label)
        if position is None:
            raise HTTPException(404, f"no reference has the label {label!r}")
        return view.item(position)

    @api.get("/references/{index}", response_model=schemas.Reference, responses=_errors(404), tags=["references"])
    def reference(index: Index) -> dict:
        """One reference."""
        return view.item(reference_at(index))

    @api.get(
        "/references/{index}/thumbnail",
        response_class=FileResponse,
        responses={200: {"content": {"image/jpeg": {}}}, **_errors(404)},
        tags=["references"],
    )
    def thumbnail(index: Index) -> FileResponse:
        """An upright JPEG thumbnail of the reference (made once, then served from the disk cache)."""
        path = view.image_path(reference_at(index))
        if path is None:
            raise HTTPException(404, f"reference {index} has no image file (it was built from in-memory images)")
        try:
            file = thumbnails.get(path)
        except ImageError as exc:
            raise HTTPException(404, f"the image of reference {index} cannot be shown: {exc.reason}") from None
        return FileResponse(file, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    @api.get(
        "/references/{index}/neighbours",
        response_model=schemas.Neighbours,
        responses=_errors(404),
        tags=["search"],
    )
    def neighbours(index: Index, k: K = 10, radius: Radius = None) -> dict:
        """The ``k`` nearest other references, nearest first, with their distances."""
        position = reference_at(index)
        items = view.neighbours_of(position, k, radius)
        return {"query": view.item(position), "k": k, "radius": radius, "neighbours": items}

    @api.post(
        "/query",
        response_model=schemas.UploadNeighbours,
        responses=_errors(400, 413, 415),
        tags=["search"],
    )
    def query(
        image: Annotated[UploadFile, File(description="an image file (JPEG, PNG, WebP, GIF, BMP, TIFF)")],
        k: K = 10,
        radius: Radius = None,
    ) -> dict:
        """The references nearest an uploaded image."""
        if model.model_name is None:
            raise HTTPException(400, "this model holds precomputed embeddings: it cannot embed an uploaded image")
        data = image.file.read(max_upload_bytes + 1)
        try:
            info = check_upload(data, max_upload_bytes, max_upload_pixels)
        except UploadError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        try:
            items = view.neighbours_of_bytes(data, k, radius)
        except ImageError as exc:
            raise HTTPException(422, f"cannot read the uploaded image: {exc.reason}") from None
        return {
            "query": None,
            "k": k,
            "radius": radius,
            "neighbours": items,
            "upload": {"width": info.width, "height": info.height, "format": info.format},
        }

    @api.get("/duplicates", response_model=schemas.Duplicates, responses=_errors(400), tags=["search"])
    def duplicates(
        threshold: Annotated[
            float | None,
            Query(ge=0, allow_inf_nan=False, description="largest distance of a link; default: measured for the model"),
        ] = None,
        k: Annotated[int, Query(ge=1, le=100, description="links looked at per reference")] = 10,
        keep: Annotated[
            Literal["resolution", "size", "oldest"], Query(description="which image of a group is the keeper")
        ] = "resolution",
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
    ) -> dict:
        """Groups of near-duplicate references (chains of links at most ``threshold`` long), largest first.

        The groups are those of ``model.find_duplicates``: each lists its keeper first, then the
        others by distance to it.
        """
        if threshold is None:
            threshold = view.default_threshold()
        try:
            groups = view.duplicate_groups(float(threshold), k, keep)
        except ValueError as exc:  # e.g. a keep policy needing facts the model does not have
            raise HTTPException(400, str(exc)) from None
        page = [
            {
                "size": len(members),
                "members": [{**view.item(p), "keeper": keeper, "distance": d} for p, keeper, d in members],
            }
            for members in groups[offset : offset + limit]
        ]
        return {
            "threshold": threshold,
            "k": k,
            "keep": keep,
            "total": len(groups),
            "offset": offset,
            "limit": limit,
            "groups": page,
            "nearest": view.nearest_distances,
        }

    @api.get("/map", response_model=schemas.Map, tags=["model"])
    def collection_map(
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

    app.include_router(api)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(Path(str(STATIC / "index.html")), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server's log (uvicorn writes it), never to the client.
        return JSONResponse({"detail": "internal server error (see the server log)"}, status_code=500)

    # Outermost last: the size cap runs before anything reads the body.
    app.add_middleware(SecurityHeaders)
    if cors:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(cors), allow_methods=["GET", "POST"], allow_headers=["Authorization"]
        )
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes + MULTIPART_SLACK)
    app.state.collection = view
    return app


def _version() -> str:
    from lookalike import __version__

    return __version__
