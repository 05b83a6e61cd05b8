"""The web page at ``/``: one HTML file whose script calls the API; its assets are under ``/static``."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = files("lookalike.server") / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def page() -> FileResponse:
    return FileResponse(Path(str(STATIC / "index.html")), media_type="text/html")
