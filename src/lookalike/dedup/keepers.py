"""Which photo of a group of copies to keep, and why.

A policy ranks the members; where it cannot tell them apart (byte-identical
or same-pixel files, or equal by its measure) the original is kept: the
earliest modified, then the name without a copy marker ("copy", "(1)", "-1"),
then the shorter path, and only then the larger file. Files a person marked
to keep, and files under a folder passed as ``keep_in``, come first.

``resolution`` counts the picture, not its padding or enlargement: flat
canvas outside what two copies share (a letterbox's bars, the corners a turn
fills in) is not counted, and a picture enlarged from a smaller one counts at
the size it was enlarged from (:func:`enlargement`). ``sharpest`` counts the
picture times its :func:`sharpness`, so the original is kept over a blurred,
a re-compressed or an enlarged copy.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = [
    "POLICIES",
    "TOLERANCE",
    "Member",
    "enlargement",
    "has_copy_marker",
    "original_order",
    "rank",
    "sharpness",
]

POLICIES = ("resolution", "sharpest", "size", "oldest", "first")

#: Names people and tools give copies: "IMG_1 copy.jpg", "copy_of_IMG_1.jpg", "IMG_1 (1).jpg", "IMG_1-1.jpg".
_COPY_MARKER = re.compile(r"(\bcopy\b|copy[ _-]of|[ _]?\(\d+\)$|-\d$|_\d$| \d$)", re.IGNORECASE)


def has_copy_marker(path: str) -> bool:
    """Whether a file's name looks like a copy's ("photo (1).jpg", "copy of photo.jpg", "photo-1.jpg")."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return bool(_COPY_MARKER.search(stem))


@dataclass
class Member:
    """What the keeper policies know of one member of a group."""

    position: int
    path: str | None
    name: str  # what ties are finally broken by: the path, or the label
    pixels: int  # width x height as stored
    picture: float = 0.0  # pixels of picture: canvas not counted, at the size it was enlarged from
    detail: float = 0.0  # pixels of picture times their sharpness
    bytes: int = -1
    mtime: float = math.inf
    identity: int = -1  # members with equal identity have the same pixels
    kept: bool = False  # a person marked it to keep, or it lies in a keep_in folder


def enlargement(image: Image.Image) -> float:
    """The factor a picture was enlarged by from a smaller one (1 when it was not).

    An enlarged picture holds no detail the smaller one did not: shrunk by its factor and enlarged back, it is
    unchanged. The largest factor (of 1.5, 2, 3, 4) for which that holds within 1.5 grey levels is the enlargement.
    """
    return _enlargement(image.convert("L"))


def _enlargement(gray: Image.Image) -> float:
    values = np.asarray(gray, dtype=np.float32)
    if min(gray.size) < 32:
        return 1.0
    found = 1.0
    for factor in (1.5, 2.0, 3.0, 4.0):
        size = (max(8, round(gray.size[0] / factor)), max(8, round(gray.size[1] / factor)))
        back = np.asarray(
            gray.resize(size, Image.Resampling.BOX).resize(gray.size, Image.Resampling.BICUBIC), np.float32
        )
        if float(np.sqrt(np.mean((values - back) ** 2))) > 1.5:
            break
        found = factor
    return found


def sharpness(image: Image.Image, factor: float = 1.0) -> float:
    """The mean step between neighbouring grey levels of a picture at its true size (shrunk by the ``factor`` it
    was enlarged by), away from JPEG's 8-pixel block edges (which a heavily compressed copy is full of): low for a
    blurred picture, and for a compressed one whose fine detail is gone."""
    gray = image.convert("L")
    if factor > 1:
        gray = gray.resize((max(8, round(gray.size[0] / factor)), max(8, round(gray.size[1] / factor))))
    steps = np.abs(np.diff(np.asarray(gray, dtype=np.float32), axis=1))
    inside_blocks = (np.arange(steps.shape[1]) % 8) != 7  # steps across a block edge are artefacts
    return float(steps[:, inside_blocks].mean()) if steps.size else 0.0


def original_order(member: Member) -> tuple:
    """The tie-break: the original is the earliest modified, without a copy marker, with the shortest path."""
    return (member.mtime, has_copy_marker(member.name), len(member.name), member.name, -member.bytes, member.position)


#: How much more a measure must be to beat the original: resampling and alignment make equal pictures differ a
#: little (a letterboxed copy measures 1-2 % more or less picture than its original).
TOLERANCE = {"resolution": 0.03, "sharpest": 0.05}


def _measure(member: Member, policy: str) -> float:
    """The policy's measure of a member: more is better."""
    return {
        "resolution": member.picture,
        "sharpest": member.detail,
        "size": float(member.bytes),
        "oldest": -member.mtime,
        "first": -float(member.position),
    }[policy]


def rank(members: list[Member], policy: str) -> tuple[list[Member], str]:
    """``members`` with the one to keep first, and why it is kept.

    Members with the same pixels (equal ``identity``) are one picture to the policy: each is measured as the
    best of them, so the original among them is kept. Otherwise a member is kept over the original only when
    the policy measures it more by more than :data:`TOLERANCE`.
    """
    measures = {m.position: _measure(m, policy) for m in members}
    for identity in {m.identity for m in members if m.identity >= 0}:
        same = [m.position for m in members if m.identity == identity]
        best = max(measures[p] for p in same)
        measures.update(dict.fromkeys(same, best))
    tolerance = TOLERANCE.get(policy, 0.0)
    ordered = sorted(members, key=lambda m: (not m.kept, original_order(m)))
    best = ordered[0]
    for member in ordered[1:]:
        if member.kept != best.kept:
            break
        if measures[member.position] > measures[best.position] + tolerance * abs(measures[best.position]):
            best = member
    ranked = [best] + [m for m in ordered if m is not best]
    return ranked, _why(ranked, policy, measures)


def _why(ranked: list[Member], policy: str, measures: dict[int, float]) -> str:
    first = ranked[0]
    if first.kept:
        return "kept by you (or in a folder kept whole)"
    others = ranked[1:]
    tolerance = TOLERANCE.get(policy, 0.0)
    if any(
        measures[m.position] >= measures[first.position] - tolerance * abs(measures[first.position]) for m in others
    ):
        return "the original: as good as the others, and the earliest, with the plainest name"
    return {
        "resolution": f"the most picture ({round(first.picture):,} pixels)",
        "sharpest": "the most detail (sharpest, least compressed)",
        "size": f"the largest file ({first.bytes:,} bytes)",
        "oldest": "the oldest file",
        "first": "the first in the dataset's order",
    }[policy]
