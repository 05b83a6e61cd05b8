"""How sure a finding is, measured on the collection itself.

Each finding kind ranks the references by a *badness* (how blurred, how far
from everything, how outvoted by its neighbours...). Problems of that kind
are planted in copies of a sample of the collection's own photos (or of its
labels) and ranked the same way, which says what share of real problems lies
beyond each badness (the recall curve ``R``). What it cannot say is how many
clean references lie there too; for that one assumption is made: a reference
worse than the worst planted problems (the ``ANCHOR_RECALL`` share of them) is a real
problem. Those references, ``A`` of them, are then the share ``R(anchor)`` of
the collection's real problems, and the real problems beyond any badness
``t`` number ``A * R(t) / R(anchor)``; among the ``U(t)`` references found
there, that is the precision

    precision(t) = A * R(t) / (R(anchor) * U(t)).

Below the anchor one more bound holds: the real problems between any badness
``t`` and the anchor are at most the references found there, so per unit of
planted recall they number at most ``(U(t) - A) / (R(t) - R(anchor))``. The
smallest of these (over the badnesses with at least :data:`MIN_PLANTED`
planted problems between them and the anchor) caps ``A / R(anchor)``
below the anchor:

    precision(t) = (A + N * (R(t) - R(anchor))) / U(t),  N = min(A / R(anchor), that bound).

Where the real problems are all worse than most planted ones (washed-out and
blank photos on clothing: 24 beyond an anchor that held a third of the planted
ones) the first guess counted three times the real problems and called every
finding sure; the bound counts what is there.

This is positive-unlabelled learning in one dimension (planted problems are
the labelled positives, the collection the unlabelled mixture; the bound is
the usual estimate of a mixture's share). The curve is
made non-increasing from the worst reference down; findings are the
references down to the badness where it falls below the least precision
asked for (or where nearly every planted problem is found already), each scored with the precision at its own badness
(less a little by its rank, :data:`RANK_SPREAD`: beyond the anchor the precision is 1 throughout, and a darker photo is
still more surely dark), and the kind's expected precision is the precision of the whole set reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ANCHOR_RECALL", "MIN_PLANTED", "Confidence", "calibrated"]

#: A reference worse than this share of the planted problems is taken for a real one: the larger share when the
#: planted problems stand apart from the collection (their worst 75 % beyond 99 % of its references), the smaller
#: when they overlap it, where only the worst are pure (at 0.75, clean photos of look-alike classes outvoted by
#: their neighbours passed for label errors and doubled their estimate).
ANCHOR_RECALL = 0.75
ANCHOR_RECALL_OVERLAPPING = 0.3
#: Findings stop where this share of the planted problems is found: a reference less bad than nearly every
#: planted problem adds no real one, only a false one.
LAST_RECALL = 0.98
#: Most a finding's score is lowered below the precision at its badness by its rank among the findings.
RANK_SPREAD = 0.005
#: Fewer planted problems than this measure nothing: the kind is reported uncalibrated.
MIN_PLANTED = 8
#: Most share of a collection the anchor may declare problems: more says the planted problems do not stand out
#: from the collection (its photos are as far, as blurred, as outvoted), so the assumption fails and nothing is found.
MAX_PREVALENCE = 0.25


@dataclass
class Confidence:
    """What the calibration of one kind found: the badness findings start at and the precision to expect.

    ``expected_precision`` is None when the kind could not be calibrated (too few planted problems);
    ``planted_recall`` is the share of the planted problems the threshold finds.
    """

    threshold: float
    expected_precision: float | None
    planted: int
    planted_recall: float | None
    basis: str

    def record(self) -> dict:
        return {
            "expected_precision": None if self.expected_precision is None else round(self.expected_precision, 4),
            "threshold": round(float(self.threshold), 6) if np.isfinite(self.threshold) else None,
            "planted": self.planted,
            "planted_recall": None if self.planted_recall is None else round(self.planted_recall, 4),
            "basis": self.basis,
        }


def calibrated(
    badness: np.ndarray, planted: np.ndarray, min_precision: float, basis: str, population: int | None = None
) -> tuple[np.ndarray, Confidence]:
    """Each reference's score (the precision at its badness; NaN when not a finding) and the kind's confidence.

    Parameters
    ----------
    badness : numpy.ndarray
        (n,) the references' badness (NaN: not measured, never a finding).
    planted : numpy.ndarray
        The badness of the planted problems of this kind.
    min_precision : float
        The least precision a finding may have.
    basis : str
        How the problems were planted, for the report.
    population : int, optional
        How many references the problems are among (default: ``len(badness)``; fewer when ``badness`` holds
        only the candidates, such as the pairs within a distance).
    """
    badness = np.asarray(badness, dtype=np.float64)
    planted = np.asarray(planted, dtype=np.float64)
    planted = planted[np.isfinite(planted)]
    scores = np.full(len(badness), np.nan)
    measured = np.flatnonzero(np.isfinite(badness))
    if len(planted) < MIN_PLANTED or not len(measured):
        return scores, Confidence(np.inf, None, len(planted), None, basis)
    apart = np.quantile(planted, 1 - ANCHOR_RECALL) > np.quantile(badness[measured], 0.99)
    anchor = float(np.quantile(planted, 1 - (ANCHOR_RECALL if apart else ANCHOR_RECALL_OVERLAPPING), method="lower"))
    values = np.minimum(badness[measured], anchor)
    planted = np.minimum(planted, anchor)
    order = np.lexsort((-badness[measured], -values))  # worst first; beyond the anchor, by the badness itself
    ranked = values[order]
    # U(t) and R(t) at each distinct badness, worst first ("at or beyond t": ties count together).
    distinct, first = np.unique(-ranked, return_index=True)
    thresholds = -distinct
    found = np.append(first[1:], len(ranked))  # references at or beyond each threshold
    recall = np.searchsorted(np.sort(-planted), -thresholds, side="right") / len(planted)
    at_anchor = found[0] if thresholds[0] >= anchor else 0
    if at_anchor == 0:  # nothing in the collection is as bad as the planted problems
        return scores, Confidence(anchor, None, len(planted), 0.0, basis)
    if at_anchor / recall[0] > MAX_PREVALENCE * (population or len(measured)):
        return scores, Confidence(
            anchor, None, len(planted), None, basis + "; they do not stand out from the collection"
        )
    per_recall = at_anchor / recall[0]
    between = (recall - recall[0]) * len(planted) >= MIN_PLANTED
    if between.any():
        bound = (found[between] - at_anchor) / (recall[between] - recall[0])
        per_recall = min(per_recall, float(bound.min()))
    precision = np.minimum(1.0, (at_anchor + per_recall * (recall - recall[0])) / found)
    precision = np.minimum.accumulate(precision)
    kept = np.flatnonzero((precision >= min_precision) & (np.append(0.0, recall[:-1]) < LAST_RECALL))
    if not len(kept):
        return scores, Confidence(anchor, None, len(planted), 0.0, basis)
    last = kept[-1]
    level = np.repeat(np.arange(len(thresholds)), np.diff(np.append(0, found)))  # each ranked reference's threshold
    chosen = level <= last
    # The precision is one value over many references (all of those beyond the anchor): a little less by rank keeps
    # the worst the surest, so findings read from the top are in order.
    rank = np.arange(int(chosen.sum())) / max(int(chosen.sum()), 1)
    scores[measured[order[chosen]]] = precision[level[chosen]] - RANK_SPREAD * rank
    return scores, Confidence(float(thresholds[last]), float(precision[last]), len(planted), float(recall[last]), basis)
