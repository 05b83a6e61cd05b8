"""Copies (the copy tiers of :func:`lookalike.dedup.find_duplicates`): a leak across splits, a duplicate within one.

Each copy is checked on the pixels of both files, so these findings are as
sure as the tiers; look-alikes (``similar``) are never findings here. The
candidates are the pairs within the threshold and those whose fingerprints
match (whole, or a crop's window), without dedup's reach beyond the threshold
for heavy edits (see :mod:`lookalike.audit.run`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lookalike.audit.confidence import Confidence
from lookalike.audit.leaks import evaluation_first
from lookalike.audit.report import Finding
from lookalike.audit.splits import Groups
from lookalike.dedup import DuplicateFinder
from lookalike.dedup.decisions import Decisions
from lookalike.dedup.tiers import COPY_TIERS

__all__ = ["copy_findings"]

#: How sure each tier of copy is (the pixels of both files decided it).
TIER_SCORES = {"exact": 1.0, "same-pixels": 1.0, "resized": 0.98, "edited": 0.95}


def copy_findings(
    finder: DuplicateFinder,
    groups: Groups,
    decisions: Decisions | None,
    confidence: dict[str, Confidence],
    verbose: bool = False,
) -> list[Finding]:
    references = finder.references
    table = finder.find(decisions=decisions, verbose=verbose)
    basis = "copies checked on the pixels of both files (dedup's copy tiers)"
    confidence["duplicate"] = Confidence(np.inf, 1.0, 0, None, basis)
    if not len(table):
        return []
    where = pd.Index(references.labels)
    position = where.get_indexer(table["label"])
    keeper_of = {g: p for g, p, kept in zip(table["group"], position, table["keeper"], strict=True) if kept}
    found = []
    for row, at in zip(table.itertuples(), position.tolist(), strict=True):
        if row.keeper or row.tier not in COPY_TIERS:
            continue
        keeper = keeper_of[row.group]
        score = TIER_SCORES.get(row.tier, 0.95)
        if groups.splits is not None and groups.splits[at] != groups.splits[keeper]:
            split = groups.split_of(keeper)
            reason = f"a copy ({row.tier}) of a photo in {split!r}: {row.reason}".rstrip(": ")
            found.append(Finding("leak", evaluation_first(at, keeper, groups), score, reason))
        else:
            matched = where.get_indexer([row.matched])[0] if row.matched is not None else keeper
            found.append(Finding("duplicate", [at, int(matched)], score, f"{row.tier} copy: {row.reason}".rstrip(": ")))
    return found
