"""Label errors: photos whose nearest neighbours mostly carry another label, with that label as the suggestion.

Calibrated by relabelling a sample of the collection's photos (each given
another class, drawn as often as classes are) and voting on them with the
neighbours they have.
"""

from __future__ import annotations

import numpy as np

from lookalike.audit.confidence import Confidence, calibrated
from lookalike.audit.neighbours import NeighbourFacts, votes
from lookalike.audit.report import Finding
from lookalike.audit.splits import Groups

__all__ = ["label_findings"]


def label_findings(
    facts: NeighbourFacts,
    groups: Groups,
    rng: np.random.Generator,
    min_precision: float,
    confidence: dict[str, Confidence],
    explained: np.ndarray,
) -> list[Finding]:
    """The label errors among the references; ``explained`` (a mask) marks those another finding already explains,
    which are neither reported nor counted where the precision to expect is estimated."""
    classes = groups.classes
    # The margin of the commonest other label over the photo's own: outvoted, and by one label, not by a spread.
    badness = np.where(classes >= 0, facts.other_vote - facts.own_vote, np.nan)
    badness[(facts.other < 0) | explained] = np.nan  # no other label to suggest: nothing to correct
    planted = np.empty(0)
    if len(facts.kept):
        own = classes[facts.kept]
        frequency = np.bincount(classes[classes >= 0], minlength=len(groups.class_names)).astype(np.float64)
        relabelled = own.copy()
        for i, label in enumerate(own.tolist()):
            weights = frequency.copy()
            weights[label] = 0
            if weights.sum():
                relabelled[i] = rng.choice(len(weights), p=weights / weights.sum())
        share, _, other_share = votes(classes[facts.kept_positions], relabelled)
        planted = other_share - share
    scores, confidence["label-error"] = calibrated(
        badness, planted, min_precision, f"{len(planted)} of the collection's labels changed to another class"
    )
    found = []
    k = facts.kept_positions.shape[1]
    for position in np.flatnonzero(~np.isnan(scores)).tolist():
        own_name = groups.class_names[classes[position]]
        other_name = groups.class_names[facts.other[position]]
        found.append(
            Finding(
                "label-error",
                [position],
                float(scores[position]),
                f"{round(facts.other_vote[position] * k)} of its {k} nearest are {other_name!r}, "
                f"{round(facts.own_vote[position] * k)} {own_name!r} (its label)",
                suggested_label=other_name,
            )
        )
    return found
