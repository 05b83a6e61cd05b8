"""Work over a set of references: matching two sets, evaluating retrieval, the similarity graph, geometric verification.

The names below are this package's public surface (the fronts import them from here, never from its modules),
each imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from lookalike.operations.evaluate import EvaluationReport, PairReport, evaluate_model, score_judged_pairs
    from lookalike.operations.match import check_limits, match_references
    from lookalike.operations.verify import Verifier

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "evaluate": ["EvaluationReport", "PairReport", "evaluate_model", "score_judged_pairs"],
        "match": ["check_limits", "match_references"],
        "verify": ["Verifier"],
    },
)
