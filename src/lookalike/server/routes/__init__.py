"""The routes: the web page, and the API's routers (one per tag of its OpenAPI spec, mounted under ``/api``)."""

from lookalike.server.routes import audit, matching, model, references, review, search, spec

#: Included in this order, which is the order of the OpenAPI spec.
API_ROUTERS = (
    model.router,
    references.router,
    search.router,
    review.router,
    audit.router,
    matching.router,
    spec.router,
)
