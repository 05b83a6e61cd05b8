"""The audit of a collection: every finding kind gathered, calibrated and put in one report."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd

from lookalike.audit.confidence import Confidence, calibrated
from lookalike.audit.copies import copy_findings
from lookalike.audit.labels import label_findings
from lookalike.audit.leaks import near_copy_findings
from lookalike.audit.neighbours import neighbour_facts
from lookalike.audit.outliers import K as OUTLIER_K
from lookalike.audit.outliers import outlier_findings
from lookalike.audit.quality import QUALITY_KINDS, badness, is_colour_set, planted_badness
from lookalike.audit.reasons import quality_reason
from lookalike.audit.report import AuditReport, Finding, failure_findings
from lookalike.audit.splits import groups_of
from lookalike.dedup import DuplicateFinder, default_threshold
from lookalike.dedup.decisions import Decisions
from lookalike.errors import InvalidArgument
from lookalike.references.core import References, as_references
from lookalike.validation import check_distance, check_positive_int

__all__ = ["audit"]

#: Photos whose damaged copies calibrate the image-quality kinds, and labels relabelled to calibrate label errors.
QUALITY_SAMPLE = 240
LABEL_SAMPLE = 1000
#: Of several exposure findings on one photo only the surest is reported, these first on a tie.
EXPOSURE = ("low-information", "dark", "bright")
#: Least score of a quality finding that explains why its photo is far from the others or outvoted by its
#: neighbours. A photo only just dark or blurred is not far because of it: landmarks at dusk planted among garments
#: were reported dark (at 26 % brightness) and no longer outliers.
EXPLAINS = 0.9
#: A near-uniform photo is too dark (too bright) rather than blank when its mean level is within this of black (white).
NEAR_BLACK_OR_WHITE = 0.2


def audit(
    references: References,
    failures: pd.DataFrame | None = None,
    class_column: str | None = None,
    split_column: str | None = None,
    *,
    k: int = 10,
    threshold: float | None = None,
    min_precision: float = 0.5,
    duplicates: bool = True,
    decisions: Decisions | None = None,
    seed: int = 0,
    verbose: bool = False,
) -> AuditReport:
    """What is wrong with a collection: leaks, label errors, outliers, poor or broken photos, duplicates.

    Parameters
    ----------
    references : lookalike.references.core.References
        A model's references (``model.core``); ``model.audit`` and ``lookalike.audit`` call this.
    failures : pandas.DataFrame, optional
        The inputs that could not be indexed (``model.failures``): truncated and unreadable files.
    class_column, split_column : str, optional
        Columns of the reference table holding each photo's class and split. Default: read from the folders
        (``train/``, ``val/``, ``valid/``, ``validation/``, ``test/`` at the top are splits; the folder below a
        split, or a photo's own folder, is its class).
    k : int, default 10
        Nearest neighbours looked at per reference (label votes, outliers, near-copy leaks).
    threshold : float, optional
        Largest distance of a near-copy leak; default: the dedup threshold measured for the network
        (:func:`lookalike.dedup.default_threshold`). Without one, near-copy leaks are not looked for.
    min_precision : float, default 0.5
        The least precision, measured on the collection, a finding may have.
    duplicates : bool, default True
        Look for copies (:func:`lookalike.dedup.find_duplicates`): copies across splits are leaks, the others
        duplicates. They need the image files; precomputed embeddings have none.
    decisions : lookalike.dedup.decisions.Decisions, optional
        A person's decisions (``model.decisions``): findings marked not an issue are left out, relabelled or
        excluded photos say so.
    seed : int, default 0
        Seeds the samples the calibration plants its problems in.
    verbose : bool, default False
        A progress bar while copies are checked on their pixels (the longest step on a large collection).

    Returns
    -------
    AuditReport
        ``.findings`` (a table), ``.kinds`` (count and expected precision per kind), ``.to_dict()`` (the JSON of
        ``lookalike audit --json``), ``.to_html(path)``.
    """
    references = as_references(references)
    k = check_positive_int("k", k)
    if isinstance(min_precision, bool) or not isinstance(min_precision, int | float) or not 0 <= min_precision <= 1:
        raise InvalidArgument(f"min_precision must be a number from 0 to 1, got {min_precision!r}")
    if len(references) < 2:
        raise InvalidArgument("an audit compares photos with each other: it needs at least two references")
    threshold = _leak_threshold(references, threshold)
    rng = np.random.default_rng(seed)
    groups = groups_of(references, class_column, split_column)
    paths = references.file_paths()
    with_files = np.flatnonzero([p is not None for p in paths])
    findings: list[Finding] = []
    confidence: dict[str, Confidence] = {}

    quality = _quality(references, with_files, rng, min_precision, groups, confidence)
    findings += quality
    findings += failure_findings(failures, confidence)

    labelled = np.flatnonzero(groups.classes >= 0) if groups.classes is not None else np.empty(0, np.int64)
    kept = rng.choice(labelled, min(LABEL_SAMPLE, len(labelled)), replace=False) if len(labelled) else labelled
    facts = neighbour_facts(references, k, groups.classes, groups.splits, threshold, kept, spread_k=OUTLIER_K)
    # A damaged photo (blurred, dark, washed out, blank) is far from the others and outvoted by its neighbours
    # because of the damage; a photo of something else entirely (an outlier) is not mislabelled. What is explained
    # so is left out of the later kinds' calibration too: counted there, the photos found and then dropped made the
    # outliers' expected precision 0.50 where 0.71 of those reported were right.
    explained = np.zeros(len(references), bool)
    explained[[f.positions[0] for f in quality if f.kind in ("blurry", *EXPOSURE) and f.score >= EXPLAINS]] = True
    outliers = outlier_findings(references, facts, groups, with_files, rng, min_precision, confidence, explained)
    explained[[f.positions[0] for f in outliers]] = True
    if groups.classes is not None:
        findings += label_findings(facts, groups, rng, min_precision, confidence, explained)
    findings += outliers
    with contextlib.ExitStack() as closing:
        copies: list[Finding] = []
        finder = None
        if duplicates and len(with_files) and references.spec is not None:
            # Copies are the pairs within the threshold or of matching fingerprints, as the dedup issue defines
            # them; each photo's nearest a little farther (dedup's reach for heavy edits) is left out: in a dataset
            # of look-alikes (garments) that is one pair per photo, 2,346 pairs to judge where 880 found the same
            # 100 planted leaks (audit benchmark: 22 s -> 6 s).
            finder = closing.enter_context(DuplicateFinder(references, threshold, copy_reach=1.0))
            copies = copy_findings(finder, groups, decisions, confidence, verbose)
        if groups.splits is not None and threshold is not None:
            findings += near_copy_findings(
                references, facts, groups, threshold, copies, with_files, rng, min_precision, confidence, finder
            )
    findings += copies
    findings = _one_cause(findings)
    if "leak" not in confidence and any(f.kind == "leak" for f in copies):
        confidence["leak"] = confidence["duplicate"]  # copies only: no threshold for near-copies
    return AuditReport.build(findings, confidence, groups, references, decisions)


def _one_cause(findings: list[Finding]) -> list[Finding]:
    """Copies another finding explains away: near-blank and washed-out photos look alike without being copies of
    each other."""
    # Blank and washed-out photos have too little left for a copy check to tell them apart (dedup's tiers judged a
    # washed-out garment a copy of another on the clothing benchmark).
    blank = {f.positions[0] for f in findings if f.kind in ("low-information", "bright")}
    return [f for f in findings if not (f.kind in ("leak", "duplicate") and blank.intersection(f.positions))]


def _leak_threshold(references: References, threshold: float | None) -> float | None:
    if threshold is not None:
        return check_distance("threshold", threshold, references.metric)
    try:
        return default_threshold(references)
    except InvalidArgument:
        return None  # nothing measured for this network: no near-copy leaks unless a threshold is given


def _quality(
    references: References,
    with_files: np.ndarray,
    rng: np.random.Generator,
    min_precision: float,
    groups,
    confidence: dict[str, Confidence],
) -> list[Finding]:
    table = references.table
    if "sharpness" not in table.columns or not len(with_files):
        return []  # precomputed embeddings, or a model indexed before pixel facts were stored
    bad = badness(table)
    planted = planted_badness(references, with_files, QUALITY_SAMPLE, rng)
    colour = is_colour_set(table)
    scores: dict[str, np.ndarray] = {}
    for kind in QUALITY_KINDS:
        if kind == "grayscale" and not colour:
            continue
        scores[kind], confidence[kind] = calibrated(
            bad[kind], planted[kind], min_precision, f"{len(planted[kind])} copies of the collection's photos"
        )
    found: list[Finding] = []
    exposure = np.stack([scores[kind] for kind in EXPOSURE])  # NaN: not a finding
    # A blank photo near black or white is a dark or a washed-out one: it loses the tie to those.
    level = pd.to_numeric(table["brightness"], errors="coerce").to_numpy()
    extreme = (level <= NEAR_BLACK_OR_WHITE) | (level >= 1 - NEAR_BLACK_OR_WHITE)
    exposure[0, extreme] -= 1e-6
    surest = np.where(np.isnan(exposure), -1, exposure).argmax(axis=0)
    for kind, values in scores.items():
        for position in np.flatnonzero(~np.isnan(values)).tolist():
            if kind in EXPOSURE and EXPOSURE[surest[position]] != kind:
                continue
            if kind == "grayscale" and not np.isnan(scores["low-information"][position]):
                continue  # a blank photo has no colour to miss
            found.append(
                Finding(
                    kind,
                    [position],
                    float(values[position]),
                    quality_reason(kind, table.iloc[position], bad[kind][position]),
                )
            )
    return found
