"""How the API reports errors: always ``{"detail": "<one line>"}`` with the status that says why, never a traceback."""

from __future__ import annotations

import errno
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from lookalike.errors import ImageError, InvalidArgument, LookalikeError, os_error_line
from lookalike.server import schemas
from lookalike.server.uploads import UploadError

logger = logging.getLogger("lookalike.server")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses, all shaped ``{"detail": "..."}``."""
    return {status: {"model": schemas.Error} for status in statuses}


def _detail(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


async def unreadable_image(request: Request, exc: ImageError) -> JSONResponse:
    # A request addressing a reference reads only that reference's file; any other reads only its upload.
    reference = getattr(request.state, "reference", None)
    if reference is None:
        return _detail(422, f"cannot read the uploaded image: {exc.reason}")
    return _detail(404, f"the image of reference {reference} cannot be shown: {exc.reason}")


async def refused_upload(request: Request, exc: UploadError) -> JSONResponse:
    return _detail(exc.status, str(exc))


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    # One line for all the invalid fields, instead of FastAPI's list of error objects.
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("query", "path", "body"))
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return _detail(422, "; ".join(parts))


#: Causes of an OSError meaning the server's disk cannot take what it must write: 507 Insufficient Storage.
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


async def named_error(request: Request, exc: Exception) -> JSONResponse:
    """A lookalike error or an OSError that a person can act on (a full disk, a folder that cannot be written, a
    damaged side file): its one line, naming the file and the cause; any other is an internal error."""
    line = os_error_line(exc) or (str(exc) if isinstance(exc, LookalikeError) else None)
    if line is None:
        return await internal_error(request, exc)
    logger.warning("%s %s: %s", request.method, request.url.path, line)
    if getattr(exc, "errno", None) in NO_ROOM:
        return _detail(507, line)
    return _detail(400 if isinstance(exc, InvalidArgument) else 500, line)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the server's log (uvicorn writes it), never to the client.
    return _detail(500, "internal server error (see the server log)")


def add_error_handlers(app: FastAPI) -> None:
    """Register the handlers turning exceptions raised by routes into error responses."""
    app.add_exception_handler(ImageError, unreadable_image)
    app.add_exception_handler(UploadError, refused_upload)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(LookalikeError, named_error)
    app.add_exception_handler(OSError, named_error)
    app.add_exception_handler(Exception, internal_error)
