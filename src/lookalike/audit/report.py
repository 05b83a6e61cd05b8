"""The audit's report: its findings, each kind's count and expected precision, as a table, JSON or HTML."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lookalike.audit.confidence import Confidence
from lookalike.audit.splits import Groups
from lookalike.dedup.decisions import Decisions
from lookalike.references.core import References

__all__ = ["KINDS", "AuditReport", "Finding", "failure_findings"]

#: Every kind of finding, in the order the report lists them.
KINDS = (
    "leak",
    "label-error",
    "outlier",
    "blurry",
    "dark",
    "bright",
    "low-information",
    "grayscale",
    "odd-size",
    "truncated",
    "unreadable",
    "duplicate",
)
#: What each kind means, for people.
MEANINGS = {
    "leak": "a copy or near-copy of a photo in another split: a model is tested on what it trained on",
    "label-error": "most of its nearest neighbours carry another label",
    "outlier": "far from every other photo (of its label, where there are labels)",
    "blurry": "blurred: its fine detail is low for its contrast",
    "dark": "too dark",
    "bright": "too bright: overexposed or washed out",
    "low-information": "near-uniform: almost one tone, nothing to see",
    "grayscale": "grey in a collection of colour photos",
    "odd-size": "much smaller than the others, or of an odd aspect ratio",
    "truncated": "the file ends early: the photo is cut off",
    "unreadable": "the file cannot be decoded as an image",
    "duplicate": "a copy of another photo of the same split",
}


@dataclass
class Finding:
    """One finding: its kind, the references involved (the one at fault first), a score in [0, 1] and why.

    ``sources`` names files that are not references (truncated or unreadable ones).
    """

    kind: str
    positions: list[int]
    score: float
    reason: str
    suggested_label: str | None = None
    sources: list[str] = field(default_factory=list)


def failure_findings(failures: pd.DataFrame | None, confidence: dict[str, Confidence]) -> list[Finding]:
    """Truncated and unreadable files, from the ingest's failure report: the decoder's own verdict, so sure."""
    basis = "the decoder's verdict on the file"
    confidence["truncated"] = Confidence(np.inf, 1.0, 0, None, basis)
    confidence["unreadable"] = Confidence(np.inf, 1.0, 0, None, basis)
    if failures is None or not len(failures):
        return []
    found = []
    for row in failures.itertuples():
        kind = getattr(row, "kind", "") or ""
        if kind in ("missing id", "missing value"):
            continue  # a row of a table, not a file
        what = "truncated" if kind == "truncated" else "unreadable"
        found.append(Finding(what, [], 1.0, str(row.reason), sources=[str(row.source)]))
    return found


class AuditReport:
    """What an audit found.

    Attributes
    ----------
    findings : pandas.DataFrame
        One row per finding: ``kind``, ``paths`` (the files involved, the one at fault first), ``score`` (in
        [0, 1], the precision measured at its badness: higher is surer), ``reason``, ``suggested_label`` (label
        errors), ``positions`` (the references involved), ``label`` and ``split`` (of the first), ``decision``
        (a person's relabel or exclusion, if any).
    kinds : dict
        Per kind: ``count``, ``expected_precision`` (None: not measured), and how it was measured.
    classes, splits : list of str
        The classes and splits found (empty when none).
    """

    def __init__(self, findings: pd.DataFrame, kinds: dict[str, dict], classes: list[str], splits: list[str], source):
        self.findings = findings
        self.kinds = kinds
        self.classes = classes
        self.splits = splits
        self.source = source

    @classmethod
    def build(
        cls,
        found: list[Finding],
        confidence: dict[str, Confidence],
        groups: Groups,
        references: References,
        decisions: Decisions | None,
    ) -> AuditReport:
        files = references.file_paths()
        labels = references.labels
        rows = []
        for finding in found:
            paths = [_name(files[p], labels[p]) for p in finding.positions] + finding.sources
            first = finding.positions[0] if finding.positions else None
            rows.append(
                {
                    "kind": finding.kind,
                    "paths": paths,
                    "score": round(min(1.0, max(0.0, float(finding.score))), 4),
                    "reason": finding.reason,
                    "suggested_label": finding.suggested_label,
                    "positions": list(finding.positions),
                    "label": groups.class_of(first) if first is not None else None,
                    "split": groups.split_of(first) if first is not None else None,
                    "decision": None,
                }
            )
        columns = ["kind", "paths", "score", "reason", "suggested_label", "positions", "label", "split", "decision"]
        # Object columns: pandas would read None as NaN in text columns, and JSON has no NaN.
        table = pd.DataFrame({c: pd.Series([row[c] for row in rows], dtype=object) for c in columns})
        table["score"] = table["score"].astype(np.float64)
        if len(table):
            table["order"] = table["kind"].map({kind: i for i, kind in enumerate(KINDS)})
            table = table.sort_values(["order", "score"], ascending=[True, False], kind="stable")
            table = table.drop(columns="order").reset_index(drop=True)
        counts = table["kind"].value_counts().to_dict() if len(table) else {}
        kinds = {}
        for kind in KINDS:
            measured = confidence.get(kind)
            record = measured.record() if measured is not None else {"expected_precision": None, "basis": "not run"}
            kinds[kind] = {"count": int(counts.get(kind, 0)), **record, "meaning": MEANINGS[kind]}
        report = cls(table, kinds, groups.class_names, groups.split_names, groups.source)
        return report.honouring(decisions) if decisions is not None else report

    def honouring(self, decisions: Decisions) -> AuditReport:
        """This report with a person's verdicts: findings marked not an issue left out (and not counted), each
        finding's ``decision`` the relabel or exclusion recorded on its photo."""
        dismissed = decisions.dismissed()
        states = decisions.audit_states()
        table = self.findings
        if len(table):
            keep = [
                (paths[0], kind) not in dismissed for paths, kind in zip(table["paths"], table["kind"], strict=True)
            ]
            table = table[keep].reset_index(drop=True)
            table["decision"] = pd.Series([states.get(paths[0]) for paths in table["paths"]], dtype=object)
        counts = table["kind"].value_counts().to_dict() if len(table) else {}
        kinds = {kind: {**values, "count": int(counts.get(kind, 0))} for kind, values in self.kinds.items()}
        return AuditReport(table, kinds, self.classes, self.splits, self.source)

    def to_dict(self) -> dict[str, Any]:
        """``{"kinds": {KIND: {"count", "expected_precision", ...}}, "findings": [...], "classes", "splits"}``."""
        findings = []
        for row in self.findings.to_dict(orient="records"):
            record = {key: value for key, value in row.items() if key != "decision" or value is not None}
            if record["suggested_label"] is None:
                del record["suggested_label"]
            findings.append(record)
        return {
            "kinds": self.kinds,
            "findings": findings,
            "classes": self.classes,
            "splits": self.splits,
            "groups_from": self.source,
        }

    def to_json(self) -> str:
        # ensure_ascii: names that are not UTF-8 come through as escapes, never a UnicodeEncodeError
        return json.dumps(self.to_dict(), default=_plain)

    def to_html(self, path: str | os.PathLike, thumbnails: int = 200) -> os.PathLike:
        """Write a page that stands alone (thumbnails inside it): see :func:`lookalike.audit.html.write_html`."""
        from lookalike.audit.html import write_html  # Pillow's encoders are only needed for the page

        return write_html(self, path, thumbnails=thumbnails)

    def summary(self) -> str:
        """One line per kind found: count and expected precision."""
        lines = []
        for kind, values in self.kinds.items():
            if values["count"]:
                expected = values["expected_precision"]
                sure = f"expected precision {expected:.2f}" if expected is not None else "precision not measured"
                lines.append(f"{kind}: {values['count']} ({sure})")
        return "\n".join(lines) if lines else "no findings"

    def __len__(self) -> int:
        return len(self.findings)

    def __repr__(self) -> str:
        return f"AuditReport({len(self)} findings)\n{self.summary()}"


def _name(path: str | None, label: Any) -> str:
    return os.fspath(path) if path is not None else str(label)


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")
