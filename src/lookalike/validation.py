"""Argument checks shared by every public entry point, so that one argument is judged the same way everywhere.

Each check returns the value in its plain Python type (``np.int64(5)`` -> ``5``)
or raises ``ValueError`` naming the argument and what it got.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np

from lookalike.errors import InvalidArgument

__all__ = ["check_choice", "check_distance", "check_positive_int", "check_threshold"]


def check_positive_int(name: str, value: Any, minimum: int = 1, none: bool = False) -> int | None:
    """An integer ``>= minimum`` (numpy integers too, never a bool); None passes when ``none``.

    >>> check_positive_int("k", np.int64(5))
    5
    """
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise InvalidArgument(f"{name} must be {what}{' or None' if none else ''}, got {value!r}")
    return int(value)


def check_distance(name: str, value: Any, metric: str) -> float:
    """A finite distance in ``metric``; negative only for ``dot``, whose distance is ``-q.r``.

    So one check serves every metric: ``threshold=-0.8`` with ``dot`` keeps the
    pairs whose dot product is at least 0.8.

    >>> check_distance("threshold", -0.8, "dot")
    -0.8
    """
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value):
        raise InvalidArgument(f"{name} must be a number (a distance in the {metric} metric), got {value!r}")
    if value < 0 and metric != "dot":  # nothing is closer than 0: a negative limit would silently match nothing
        raise InvalidArgument(f"{name} must be a non-negative {metric} distance, got {value!r}")
    return float(value)


def check_threshold(threshold: Any, metric: str, radius: Any = None) -> float | None:
    """The distance cut-off, checked in ``metric``: ``threshold``, or ``radius`` (Turi's name for it), or None.

    Both names are accepted where Turi had ``radius`` (``query``, ``similarity_graph``); an error names the one given.

    >>> check_threshold(None, "cosine", radius=0.2)
    0.2
    """
    if radius is not None:
        if threshold is not None and threshold != radius:
            raise InvalidArgument(
                f"threshold={threshold!r} and radius={radius!r} are one argument (radius is Turi's name): give one"
            )
        return check_distance("radius", radius, metric)
    return None if threshold is None else check_distance("threshold", threshold, metric)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgument(f"{name} must be one of {choices}, got {value!r}")
    return value
