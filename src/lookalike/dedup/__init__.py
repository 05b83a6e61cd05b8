"""Copies in a photo collection: candidates, tiers of sameness, groups with a keeper, and what to do with the rest.

Candidates come from close embeddings and close copy fingerprints
(:mod:`.candidates`); the pixels of both files decide how much a pair is the
same (:mod:`.tiers`); groups are the connected copies, each with one photo to
keep (:mod:`.groups`).
"""

from lookalike.dedup.groups import (
    DEFAULT_THRESHOLDS,
    POLICIES,
    DuplicateFinder,
    default_threshold,
    find_duplicates,
    summary_text,
)

__all__ = ["DEFAULT_THRESHOLDS", "DuplicateFinder", "POLICIES", "default_threshold", "find_duplicates", "summary_text"]
