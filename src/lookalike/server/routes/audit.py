"""Routes of the Audit view: the findings of ``model.audit()`` page by page, a person's verdicts on them, and the
relabelled and excluded photos as a CSV to apply to a training table."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from lookalike.errors import InvalidArgument
from lookalike.ingest import escaped
from lookalike.server import schemas
from lookalike.server.collection import Collection
from lookalike.server.dependencies import View
from lookalike.server.errors import error_responses
from lookalike.server.routes.review import Reviewer

router = APIRouter(tags=["audit"])


def _report(view: Collection) -> Any:
    """The audit of the served references with the library's defaults, computed once (it reads every reference and
    plants problems in a sample) and then honouring the verdicts recorded since. An apply makes a new Collection,
    and a new audit."""
    with view.audit_lock:
        if view.audit is None:
            view.audit = view.model.audit()
        return view.audit.honouring(view.model.decisions)


@router.get("/audit", response_model=schemas.AuditPage, responses=error_responses(400))
def audit(
    view: View,
    review: Reviewer,
    kind: Annotated[str | None, Query(max_length=64, description="only findings of this kind")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict:
    """The findings of the model's audit (``model.audit()``, its defaults), surest first within each kind, with each
    kind's count and the precision measured on the collection; findings marked not an issue are left out."""
    try:
        report = _report(view)
    except InvalidArgument as exc:  # a model the audit cannot read (a single reference...)
        raise HTTPException(400, str(exc)) from None
    table = report.findings
    if kind is not None:
        table = table[table["kind"] == kind]
    page = table.iloc[offset : offset + limit]
    findings = [
        {
            "kind": row.kind,
            "score": row.score,
            "reason": escaped(row.reason),
            "suggested_label": row.suggested_label,
            "label": row.label,
            "split": row.split,
            "decision": row.decision,
            "items": [view.item(p) for p in row.positions],
            "paths": [escaped(p) for p in row.paths],
        }
        for row in page.itertuples()
    ]
    return {
        "kinds": report.kinds,
        "kind": kind,
        "total": len(table),
        "offset": offset,
        "limit": limit,
        "findings": findings,
        "saved": review.model_path is not None,
    }


@router.post("/audit/decisions", response_model=schemas.ReviewStatus, responses=error_responses(400, 404, 409))
def decide(body: schemas.AuditDecision, view: View, review: Reviewer) -> dict:
    """Record a verdict on one reference's finding; saved with the model like duplicate decisions (merged under the
    folder's lock with any other writer's). 409: a file that cannot be decided on, or not the one the page listed."""
    if body.index >= view.size:
        raise HTTPException(404, f"no reference {body.index}: the model has {view.size}")
    if body.path is not None and body.path != view.item(body.index)["path"]:
        raise HTTPException(409, f"reference {body.index} is another file now: reload the findings")
    try:
        review.decide_audit(view, body.action, body.index, getattr(body, "finding", None), getattr(body, "label", None))
    except InvalidArgument as exc:
        raise HTTPException(409, str(exc)) from None
    return review.status(view)


@router.get("/audit/changes.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def changes(request: Request, view: View) -> Response:
    """The photos relabelled or excluded so far, as CSV (``path,action,label``): what to apply to a training table."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "action", "label"])
    for row in view.model.decisions.dataset_changes().itertuples():
        writer.writerow([escaped(row.path), row.action, row.label if isinstance(row.label, str) else ""])
    headers = {"Content-Disposition": 'attachment; filename="audit-changes.csv"'}
    return Response(buffer.getvalue(), media_type="text/csv", headers=headers)
