"""Why a photo is an image-quality finding, in words a person checks against the photo."""

from __future__ import annotations

import pandas as pd

__all__ = ["quality_reason"]


def quality_reason(kind: str, facts: pd.Series, badness: float) -> str:
    """One sentence from the photo's stored facts (``facts``: its row of the reference table)."""
    if kind == "blurry":
        return (
            f"blurred: fine detail {facts['sharpness']:.1f} grey levels for a spread of "
            f"{facts['contrast'] * 255:.0f} (a sharp photo has several times more)"
        )
    if kind == "dark":
        return f"too dark: mean brightness {facts['brightness']:.0%}"
    if kind == "bright":
        return f"too bright: mean brightness {facts['brightness']:.0%}, spread {facts['contrast']:.0%}"
    if kind == "low-information":
        return f"near-uniform: grey levels spread {facts['contrast']:.1%} around {facts['brightness']:.0%}"
    if kind == "grayscale":
        return f"grey in a colour collection: colourfulness {facts['colourfulness']:.3f}"
    if kind == "odd-size":
        return f"{int(facts['width'])}x{int(facts['height'])}: {badness:.1f} spreads from the collection's usual size"
    return kind
