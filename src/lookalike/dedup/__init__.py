"""Copies in a photo collection: candidates, tiers of sameness, groups with a keeper, and what to do with the rest.

Candidates come from close embeddings and close copy fingerprints
(:mod:`.candidates`); the pixels of both files decide how much a pair is the
same (:mod:`.tiers`); groups are the connected copies, each with one photo to
keep (:mod:`.groups`); a person's decisions (:mod:`.decisions`) are carried
out by moves that can be undone (:mod:`.moves`).

The names below are this package's public surface (the fronts import them from here, never from its modules),
each imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from lookalike.dedup.candidates import candidates_to_bytes, remember_saved
    from lookalike.dedup.decisions import DamagedDecisions, Decisions, read_saved, set_aside_damaged
    from lookalike.dedup.groups import (
        DEFAULT_THRESHOLDS,
        POLICIES,
        DuplicateFinder,
        Listed,
        default_threshold,
        find_duplicates,
        summary_text,
    )
    from lookalike.dedup.moves import MANIFEST_PREFIX, MODES, MoveReport, check_destination, read_manifest, undo
    from lookalike.dedup.tiers import COPY_TIERS, TIERS, check_tiers

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "candidates": ["candidates_to_bytes", "remember_saved"],
        "decisions": ["DamagedDecisions", "Decisions", "read_saved", "set_aside_damaged"],
        "groups": [
            "DEFAULT_THRESHOLDS",
            "POLICIES",
            "DuplicateFinder",
            "Listed",
            "default_threshold",
            "find_duplicates",
            "summary_text",
        ],
        "moves": ["MANIFEST_PREFIX", "MODES", "MoveReport", "check_destination", "read_manifest", "undo"],
        "tiers": ["COPY_TIERS", "TIERS", "check_tiers"],
    },
)
