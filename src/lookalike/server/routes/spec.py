"""The API's OpenAPI spec at ``/api/openapi.json``: an API route like the others, so a token guards it too."""

from __future__ import annotations

import copy

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lookalike.server.dependencies import View

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
def openapi(request: Request, view: View) -> JSONResponse:
    spec = copy.deepcopy(request.app.openapi())
    # What the map can be coloured by depends on the model's columns: the spec served names them exactly.
    for parameter in spec["paths"]["/api/map"]["get"].get("parameters", []):
        if parameter["name"] == "color":
            parameter["schema"]["enum"] = list(view.colourings)
    return JSONResponse(spec)
