"""Near-duplicate groups, which image of each group to keep, and safe actions on the others.

Groups are the connected components of the thresholded neighbour graph
(each reference linked to those of its ``k`` nearest references that are
within the threshold), built block by block with :mod:`lookalike.graph`.
A keeper policy picks one image per group; the rest can be reported, moved
(keeping their relative paths, never overwriting) or deleted. No action
ever touches the keeper, a file that is the keeper under another name
(hard or symbolic link), or a file outside the input folder.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lookalike.core import References, as_references
from lookalike.decisions import Decisions
from lookalike.dedup.tiers import TIERS, Sameness, check_tiers
from lookalike.embed.registry import descriptor_name
from lookalike.errors import InvalidArgument
from lookalike.files import move_without_overwrite, relative_inside
from lookalike.index.metrics import exact_distances
from lookalike.ingest.names import escaped_frame, has_surrogates, text_column
from lookalike.validation import check_choice, check_distance, check_positive_int, renamed_argument

__all__ = [
    "DEFAULT_THRESHOLDS",
    "POLICIES",
    "apply_actions",
    "default_threshold",
    "describe",
    "summary_text",
    "find_duplicates",
]

POLICIES = ("resolution", "size", "oldest", "first")

#: Default thresholds by (network, precision, descriptor preset, metric), measured by
#: benchmarks/dedup_threshold.py --model NAME --precision P --descriptor D: the largest distance at which >= 99% of the
#: pairs it links on ../shared/data/neardup are true near-duplicates AND at most 1 in 10,000 pairs of
#: distinct garments photographed alike (clothing/validation) is linked: dedup deletes files, so a
#: false link costs more than a missed copy. gem's precision rule alone gave cosine 0.16, which
#: linked jeans with shorts on the same hanger. Distances depend on the descriptor (gem vectors have
#: unit length, plain ones do not), so each preset has its own. Re-saved, resized and slightly
#: cropped copies are within them; neardup's hard edits (crops, rotations, overlays) mostly are not.
DEFAULT_THRESHOLDS: dict[tuple[str, str, str, str], float] = {
    ("squeezenet_v1.1", "fp32", "plain", "cosine"): 0.12,
    ("squeezenet_v1.1", "fp32", "plain", "euclidean"): 31.0,
    ("squeezenet_v1.1", "fp32", "gem", "cosine"): 0.10,
    ("squeezenet_v1.1", "fp32", "gem", "euclidean"): 0.46,
    ("efficientnet_lite0", "int8", "plain", "cosine"): 0.15,
    ("efficientnet_lite0", "int8", "plain", "euclidean"): 8.1,
    ("efficientnet_lite0", "int8", "gem", "cosine"): 0.15,
    ("efficientnet_lite0", "int8", "gem", "euclidean"): 0.55,
    ("efficientnet_lite0", "fp32", "plain", "cosine"): 0.15,
    ("efficientnet_lite0", "fp32", "plain", "euclidean"): 7.6,
    ("efficientnet_lite0", "fp32", "gem", "cosine"): 0.14,
    ("efficientnet_lite0", "fp32", "gem", "euclidean"): 0.54,
}


@renamed_argument("model", "references")
def default_threshold(references: References) -> float:
    """The measured default threshold for the references' network, descriptor and metric, or a clear error.

    Parameters
    ----------
    references : lookalike.core.References
        A model's references (``model.core``).

    Returns
    -------
    float
        A distance in the model's metric (see :data:`DEFAULT_THRESHOLDS`).

    Raises
    ------
    ValueError
        When nothing was measured for this combination: other networks, the
        ``dot`` metric, whitened (``fast``, ``best``) or custom descriptors,
        learned projections, precomputed embeddings.
    """
    references = as_references(references)
    spec = references.spec
    descriptor = None if spec is None else descriptor_name(spec.descriptor)
    precision = spec.precision if spec is not None else None
    name, projection = references.model_name, references.projection
    key = (name, precision, descriptor, references.metric)
    if key not in DEFAULT_THRESHOLDS or projection is not None:
        known = ", ".join(f"{n} ({p}) + {d} + {m}" for n, p, d, m in DEFAULT_THRESHOLDS)
        network = f"{name} ({precision})"
        if name is None:
            what = "precomputed embeddings"
        elif projection is not None and descriptor is not None:  # e.g. an LDA on top of a measured preset
            what = f"{network} with the {descriptor} descriptor and a {projection.kind} projection"
        else:
            what = f"{network} with the {descriptor or 'custom'} descriptor"
        raise InvalidArgument(
            f"no default dedup threshold for {what} and the {references.metric} metric "
            f"(measured for: {known}): pass threshold="
        )
    return DEFAULT_THRESHOLDS[key]


@renamed_argument("model", "references")
def find_duplicates(
    references: References,
    threshold: float | None = None,
    keep: str = "resolution",
    k: int = 10,
    verify: Any = False,
    tiers: str | Sequence[str] | None = None,
    decisions: Decisions | None = None,
) -> pd.DataFrame:
    """Groups of near-duplicate references, each with one image to keep, and how much each is the same.

    Parameters
    ----------
    references : lookalike.core.References
        A model's references (``model.core``); ``model.find_duplicates`` calls this.
    threshold : float, optional
        Largest distance (in the model's metric) between two linked images;
        images linked by a chain of such links form a group. Default: the
        value measured for the model's network, descriptor and metric (see
        ``DEFAULT_THRESHOLDS`` and docs/dedup.md).
    keep : {"resolution", "size", "oldest", "first"}, default "resolution"
        Which image of a group to keep: the most pixels (width x height;
        ties: the larger file), the largest file (ties: more pixels), the
        oldest modification time, or the first in the dataset's order (the
        one policy for precomputed embeddings). Remaining ties go to the first
        path in sorted order, so the choice never depends on the order of indexing.
    k : int, default 10
        Neighbours looked at per image; a group larger than ``k + 1`` is
        still found whole through chains of links.
    verify : bool or lookalike.verify.Verifier, default False
        Link two images only when geometric verification confirms them
        (local features + RANSAC, see docs/verify.md; needs
        ``lookalike[verify]``): a looser threshold then finds more copies
        without merging look-alikes.
    tiers : str or list of str, optional
        Keep only members whose tier is one of these (see below), and the
        groups that still have one; ``lookalike.dedup.tiers.COPY_TIERS`` for what
        a person calls copies. All tiers by default.
    decisions : lookalike.decisions.Decisions, optional
        What a person decided (``model.decisions``): a file marked to keep is
        its group's keeper whatever ``keep`` says; two files marked not
        duplicates are never linked directly. Decisions on files that have
        changed since are reported and not applied.

    Returns
    -------
    pandas.DataFrame
        One row per image in a group: ``group`` (0 is the largest group),
        ``label``, ``keeper`` (bool, the first row of its group),
        ``distance`` (to the group's keeper), ``tier`` (how much it is the
        same as the keeper: ``exact``, ``same-pixels``, ``resized``,
        ``edited`` or ``similar``, see :mod:`lookalike.dedup.tiers`; a keeper's is
        the strongest of its group's), then ``path``, ``width``,
        ``height``, ``bytes``, ``mtime`` where known. Images without a
        near-duplicate are not listed.

    Examples
    --------
    >>> dups = model.find_duplicates(threshold=0.05)  # doctest: +SKIP
    >>> dups[~dups.keeper].path.tolist()  # the images a dedup would remove  # doctest: +SKIP
    ['photos/IMG_0001 (copy).jpg']
    """
    references = as_references(references)
    if threshold is None:
        threshold = default_threshold(references)
    threshold = check_distance("threshold", threshold, references.metric)
    keep = check_choice("keep", keep, POLICIES)
    k = check_positive_int("k", k)
    wanted = check_tiers(tiers) if tiers is not None else TIERS
    decided = _decided(references, decisions)
    groups = _components(references, threshold, k, verify, decided)
    facts = _facts(references, keep)
    paths = references.file_paths()
    verifier = verify if verify else (True if importlib.util.find_spec("cv2") else None)
    rows = []
    for number, members in enumerate(groups):
        members = sorted(
            members, key=lambda p: (p not in decided.kept, p in decided.discarded, _rank_key(keep, facts, p))
        )
        keeper = members[0]
        vectors = references.embeddings
        distances = exact_distances(references.metric, vectors[[keeper]], vectors[members][None])[0]
        distances[0] = 0.0
        order = sorted(range(1, len(members)), key=lambda i: (distances[i], facts["sort_name"][members[i]]))
        sameness = Sameness(verifier)  # one per group: it keeps the group's decoded images
        found = [(i, sameness.tier(paths[keeper], paths[members[i]])) for i in order]
        found = [(i, tier) for i, tier in found if tier in wanted]
        if not found:
            continue
        strongest = min((tier for _, tier in found), key=TIERS.index)
        rows.append((number, keeper, True, 0.0, strongest))
        rows += [(number, members[i], False, float(distances[i]), tier) for i, tier in found]
    positions = np.array([r[1] for r in rows], np.int64)
    table = pd.DataFrame(
        {
            "group": np.array([r[0] for r in rows], np.int64),
            "label": references.labels[positions],
            "keeper": np.array([r[2] for r in rows], bool),
            "distance": np.array([r[3] for r in rows], np.float64),
            "tier": [r[4] for r in rows],
        }
    )
    for column in ("path", "width", "height", "bytes", "mtime"):
        if column in facts:
            values = facts[column][positions]
            table[column] = text_column(values.tolist()) if column == "path" else values
    return table


def _components(references: References, threshold: float, k: int, verify: Any, decided: Decided) -> list[list[int]]:
    """Connected components (reference positions) of two or more, largest first, then by first position.

    Pairs a person said are not duplicates are never linked directly; a file they discarded is always
    linked to the keeper they discarded it for.
    """
    from networkx.utils import UnionFind  # networkx costs ~0.2 s to import: only dedup needs it

    links = UnionFind()
    for start, distances, positions in references.neighbour_blocks(k):
        rows, cols = np.nonzero(distances <= threshold)
        pairs = np.column_stack([rows + start, positions[rows, cols]])
        if verify:
            from lookalike.verify import verified_pairs

            pairs = verified_pairs(references, pairs, verify)
        for source, target in pairs.tolist():
            if (min(source, target), max(source, target)) not in decided.apart:
                links.union(source, target)
    for source, target in decided.linked:
        links.union(source, target)
    groups = [sorted(group) for group in links.to_sets() if len(group) > 1]
    groups.sort(key=lambda g: (-len(g), g[0]))
    return groups


@dataclass
class Decided:
    """A person's decisions as reference positions: pairs kept apart, files kept, files discarded and their links."""

    apart: set[tuple[int, int]] = field(default_factory=set)
    kept: set[int] = field(default_factory=set)
    discarded: set[int] = field(default_factory=set)
    linked: list[tuple[int, int]] = field(default_factory=list)


def _decided(references: References, decisions: Decisions | None) -> Decided:
    """What the still-valid decisions say about these references, by position."""
    decided = Decided()
    if decisions is None or not len(decisions):
        return decided
    paths = references.file_paths()
    where = {os.fspath(p): i for i, p in enumerate(paths) if p is not None}
    for record in decisions.valid():
        positions = [where.get(p) for p in record["paths"]]
        if None in positions:
            continue  # a file not among these references
        if record["kind"] == "keep":
            decided.kept.add(positions[0])
        elif record["kind"] == "discard":
            decided.discarded.add(positions[0])
            decided.linked.append((positions[0], positions[1]))
        else:
            decided.apart.add((min(positions), max(positions)))
    return decided


def _facts(references: References, keep: str) -> dict[str, np.ndarray]:
    """Per-reference columns the policies need: path, width, height, bytes and mtime (read from disk now)."""
    refs = references.table
    n = len(references)
    facts: dict[str, np.ndarray] = {}
    paths = references.paths
    has_paths = paths is not None
    if has_paths:
        facts["path"] = np.asarray(paths).astype(str)
        stats = [_stat(p) for p in facts["path"]]
        facts["bytes"] = np.array([s.st_size if s else -1 for s in stats], np.int64)
        facts["mtime"] = np.array([s.st_mtime if s else np.nan for s in stats], np.float64)
    for column in ("width", "height"):
        if column in refs.columns:
            facts[column] = refs[column].to_numpy()
    facts["sort_name"] = facts["path"] if has_paths else np.array([str(v) for v in references.labels])
    needs = {"resolution": ("width", "height"), "size": ("bytes",), "oldest": ("mtime",), "first": ()}[keep]
    missing = [c for c in needs if c not in facts]
    if missing:
        raise InvalidArgument(
            f"keep={keep!r} needs the {' and '.join(missing)} of each image, which this model does not have "
            f"({'built from precomputed embeddings' if not has_paths else 'no image headers kept'}); "
            f"use keep='first' (the first in the dataset's order)" + (", 'size' or 'oldest'" if has_paths else "")
        )
    facts["pixels"] = (
        facts["width"].astype(np.int64) * facts["height"].astype(np.int64)
        if "width" in facts
        else np.zeros(n, np.int64)
    )
    return facts


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _rank_key(keep: str, facts: dict[str, np.ndarray], position: int) -> tuple:
    """Sort key of a group member: the keeper sorts first."""
    pixels = int(facts["pixels"][position])
    size = int(facts["bytes"][position]) if "bytes" in facts else -1
    name = facts["sort_name"][position]
    if keep == "resolution":
        return (-pixels, -size, name, position)
    if keep == "size":
        return (-size, -pixels, name, position)
    if keep == "first":
        return (position,)
    mtime = facts["mtime"][position]
    return (np.inf if np.isnan(mtime) else mtime, name, position)  # a file gone missing is never the oldest


# -------------------------------------------------------------------------------------------------------- actions


def apply_actions(
    duplicates: pd.DataFrame, root: str | os.PathLike, move_to: str | os.PathLike | None = None, delete: bool = False
) -> pd.DataFrame:
    """Move or delete every non-keeper of ``duplicates`` (from :func:`find_duplicates`); what happened to each.

    Parameters
    ----------
    duplicates : pandas.DataFrame
        The table of :func:`find_duplicates`, with a ``path`` column.
    root : str or path
        The input folder: no file outside it (after resolving symbolic links
        of its folders) is touched.
    move_to : str or path, optional
        Move each duplicate to ``move_to / <its path relative to root>``;
        an existing file there is never overwritten (the duplicate stays).
    delete : bool, default False
        Delete each duplicate instead. Exactly one of ``move_to`` and
        ``delete`` is required.

    Returns
    -------
    pandas.DataFrame
        ``path, action, destination, status ("done" or "skipped"), reason``.

    Examples
    --------
    >>> apply_actions(model.find_duplicates(), "photos/", move_to="photos-dups/")  # doctest: +SKIP
    """
    if (move_to is None) == (not delete):
        raise InvalidArgument("give exactly one action: move_to=FOLDER or delete=True")
    if "path" not in duplicates.columns:
        raise InvalidArgument("these duplicates have no file paths (precomputed embeddings): nothing to move or delete")
    real_root = Path(os.path.realpath(root))
    if not real_root.is_dir():
        raise NotADirectoryError(f"input folder not found: {root}")
    keepers = [p for p in duplicates.loc[duplicates["keeper"], "path"] if _stat(p) is not None]
    kept_files = {(s.st_dev, s.st_ino) for s in map(os.stat, keepers)}
    results = []
    for path in duplicates.loc[~duplicates["keeper"], "path"]:
        action = "move" if move_to is not None else "delete"
        destination, reason = None, _refusal(path, real_root, kept_files)
        if reason is None:
            if move_to is not None:
                destination = Path(move_to) / relative_inside(path, real_root)
                reason = move_without_overwrite(Path(path), destination)
            else:
                os.unlink(path)  # a symbolic link is removed itself, never its target
        results.append((path, action, destination and str(destination), "skipped" if reason else "done", reason or ""))
    names = any(has_surrogates(value) for row in results for value in row)  # object columns: see ingest.names
    return pd.DataFrame(
        results, columns=["path", "action", "destination", "status", "reason"], dtype=object if names else None
    )


def _refusal(path: str, real_root: Path, kept_files: set[tuple[int, int]]) -> str | None:
    """Why ``path`` must not be touched, or None."""
    if not os.path.lexists(path):
        return "file no longer exists"
    if relative_inside(path, real_root) is None:
        return f"outside the input folder {real_root}"
    target = _stat(path)
    if target is not None and (target.st_dev, target.st_ino) in kept_files:
        return "same file as a keeper (a link to it)"
    return None


def summary_text(duplicates: pd.DataFrame) -> str:
    """A human-readable dry-run report: each group's keeper and the others with their distances."""
    if duplicates.empty:
        return "no near-duplicates found"
    duplicates = escaped_frame(duplicates)
    name = "path" if "path" in duplicates.columns else "label"
    lines = []
    for number, group in duplicates.groupby("group", sort=True):
        keeper = group[group["keeper"]].iloc[0]
        lines.append(f"group {number + 1} ({len(group)} images): keep {keeper[name]}{_size(keeper)}")
        for row in group[~group["keeper"]].itertuples():
            lines.append(f"    duplicate {getattr(row, name)}{_size(row._asdict())}  distance {row.distance:.4f}")
    others = int((~duplicates["keeper"]).sum())
    total = duplicates.loc[~duplicates["keeper"], "bytes"].clip(lower=0).sum() if "bytes" in duplicates else 0
    lines.append(
        f"{duplicates['group'].nunique()} groups, {others} duplicates" + (f" ({total / 1e6:.2f} MB)" if total else "")
    )
    return "\n".join(lines)


def _size(row: Any) -> str:
    if "width" in row and "bytes" in row:
        return f"  ({int(row['width'])}x{int(row['height'])}, {int(row['bytes'])} bytes)"
    return ""


def describe(duplicates: pd.DataFrame) -> str:
    """Deprecated name of :func:`summary_text`."""
    warnings.warn("lookalike.dedup.describe is renamed summary_text", DeprecationWarning, stacklevel=2)
    return summary_text(duplicates)
