"""The FastAPI application: the REST API under ``/api`` and the web page at ``/``."""

from __future__ import annotations

import os
import threading
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from lookalike.config import cache_dir
from lookalike.errors import InvalidType
from lookalike.server.collection import Collection
from lookalike.server.errors import add_error_handlers, error_responses
from lookalike.server.matching import MatchedSet
from lookalike.server.review import Review
from lookalike.server.routes import API_ROUTERS, page
from lookalike.server.security import (
    BearerToken,
    BodyLimit,
    HostGuard,
    NoByteOrderMark,
    OriginGuard,
    SecurityHeaders,
    bearer_guard,
)
from lookalike.server.thumbnails import ThumbnailCache
from lookalike.server.uploads import DecodeSlots, UploadLimits
from lookalike.validation import check_positive_int
from lookalike.version import __version__

#: Defaults of :func:`create_app`: 20 MB uploads, 40 megapixels decoded.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
#: Slack for the multipart envelope around the file, so a file of exactly the cap still fits.
MULTIPART_SLACK = 64 * 1024


def create_app(
    similarity_model: Any,
    token: str | None = None,
    cors: list[str] | None = None,
    allowed_hosts: list[str] | None = None,
    thumbnail_dir: str | os.PathLike | None = None,
    thumbnail_size: int = 256,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    max_upload_pixels: int = MAX_UPLOAD_PIXELS,
    model_path: str | os.PathLike | None = None,
    move_to: str | os.PathLike | None = None,
    matched: MatchedSet | None = None,
) -> FastAPI:
    """The explorer's web application for a model.

    Parameters
    ----------
    similarity_model : lookalike.ImageSimilarityModel
        The model to serve (``lookalike.load_model(path)`` for a saved one):
        the server uses its public API only and never imports the model module.
    token : str, optional
        When given, every ``/api`` request must send ``Authorization: Bearer <token>``.
    cors : list of str, optional
        Origins allowed to call the API from other pages. None: no CORS headers at all, and a
        POST from a page of another origin is refused (403). ``lookalike serve`` and
        ``start_in_thread`` allow it only with a ``token``.
    allowed_hosts : list of str, optional
        Host names to answer (a guard against DNS rebinding), each with or without a port
        (``"localhost"``, ``"[::1]:8000"``); other Host headers get 400. None answers any.
    thumbnail_dir : path, optional
        Where thumbnails are cached; default ``<lookalike cache>/thumbnails``.
    thumbnail_size : int, default 256
        Longest side of a thumbnail.
    max_upload_bytes : int, default 20 MB
        Largest uploaded image; larger requests get 413.
    max_upload_pixels : int, default 40 000 000
        Largest uploaded width x height (decompression-bomb guard); larger get 413.
        Uploads are decoded one per core at a time; the others wait their turn.
    model_path : path, optional
        Where ``similarity_model`` is saved: the duplicate decisions made on the page are saved
        there (merged with any other explorer's), and so is the model after discarded files move.
        None: decisions last as long as the server.
    move_to : path, optional
        The folder the page's "apply" moves discarded files to (outside the folders the model was
        indexed from); None: discards are recorded but not carried out from the page.
    matched : lookalike.server.matching.MatchedSet, optional
        A second set matched one to one with the model, shown by the page's Match view
        (``lookalike serve MODEL --match SET`` makes it).

    Examples
    --------
    >>> import uvicorn                                   # doctest: +SKIP
    >>> uvicorn.run(create_app(lk.load_model("photos.lookalike")))  # doctest: +SKIP
    """
    if isinstance(similarity_model, str | os.PathLike):
        raise InvalidType(
            f"create_app takes a model, not a path: load it first with lookalike.load_model({similarity_model!r})"
        )
    check_positive_int("max_upload_bytes", max_upload_bytes)
    check_positive_int("max_upload_pixels", max_upload_pixels)
    # No docs page: Swagger UI's scripts come from a CDN (blocked by our Content-Security-Policy, unreachable
    # offline), and a page a browser opens cannot send the bearer token. The spec is a guarded route instead.
    app = FastAPI(
        title="lookalike",
        summary="Browse an image-similarity model, find neighbours, search by upload, review near-duplicates.",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.collection = Collection(similarity_model)
    app.state.reloading = threading.Lock()  # one reload of a model saved under the server at a time
    app.state.thumbnails = ThumbnailCache(thumbnail_dir or cache_dir() / "thumbnails", size=thumbnail_size)
    app.state.upload_limits = UploadLimits(max_upload_bytes, max_upload_pixels)
    app.state.decode_slots = DecodeSlots()
    app.state.review = Review(model_path, move_to)
    app.state.matched = matched

    guard = [Depends(bearer_guard(token))] if token else []
    responses = error_responses(401, 422) if token else error_responses(422)
    for router in API_ROUTERS:
        app.include_router(router, prefix="/api", dependencies=guard, responses=responses)
    app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=str(page.STATIC)), name="static")
    add_error_handlers(app)

    # Outermost last: the size cap runs before anything reads the body, the Host and the token are checked before the
    # body is read (inside CORS, which answers preflights: they carry no token), security headers on every answer.
    app.add_middleware(NoByteOrderMark)
    if token:
        app.add_middleware(BearerToken, token=token)
    app.add_middleware(SecurityHeaders)
    if cors:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(cors), allow_methods=["GET", "POST"], allow_headers=["Authorization"]
        )
    app.add_middleware(OriginGuard, allowed_origins=cors or ())
    if allowed_hosts:
        app.add_middleware(HostGuard, allowed_hosts=allowed_hosts)
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes + MULTIPART_SLACK)
    return app
