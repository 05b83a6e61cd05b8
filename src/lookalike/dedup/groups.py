"""Groups of copies, the photo of each to keep, and what to do with the others.

Candidates are pairs with close embeddings or matching copy fingerprints
(:mod:`.candidates`); each pair that can change a group is judged from the
pixels of both files (:mod:`.tiers`). A group is a connected set of copies:
look-alikes (``similar``) never join two groups, they are listed beside the
group they resemble. A keeper policy picks one photo per group
(:mod:`.keepers`); only members that are themselves copies of the keeper
are acted on, and nothing is acted on outside the input folder or on the
keeper under another name.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lookalike.config import cpu_count
from lookalike.dedup.candidates import COPY_REACH, candidate_pairs
from lookalike.dedup.decisions import Decisions
from lookalike.dedup.keepers import POLICIES, Measures, Member, original_key, original_order, rank
from lookalike.dedup.tiers import COPY_TIERS, TIERS, Sameness, Verdict, check_tiers, stronger
from lookalike.embed.cache import EmbeddingCache, default_path
from lookalike.embed.registry import descriptor_name
from lookalike.errors import InvalidArgument
from lookalike.index.metrics import exact_distances_at
from lookalike.ingest.fingerprint import MATCH_BITS
from lookalike.ingest.names import escaped_frame, text_column
from lookalike.references.core import References, as_references
from lookalike.validation import check_choice, check_distance, check_positive_int

__all__ = [
    "DEFAULT_THRESHOLDS",
    "DuplicateFinder",
    "Listed",
    "POLICIES",
    "default_threshold",
    "summary_text",
    "find_duplicates",
]

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


def default_threshold(references: References) -> float:
    """The measured default threshold for the references' network, descriptor and metric, or a clear error.

    Parameters
    ----------
    references : lookalike.references.core.References
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


def find_duplicates(
    references: References,
    threshold: float | None = None,
    keep: str = "resolution",
    k: int = 10,
    tiers: str | Sequence[str] | None = None,
    decisions: Decisions | None = None,
    act_on: str | Sequence[str] = COPY_TIERS,
    keep_in: Sequence[str | os.PathLike] = (),
    sameness: Sameness | None = None,
    verbose: bool = False,
) -> pd.DataFrame:
    """Groups of copies among the references, each with the photo to keep, and what to do with each other member.

    Candidate pairs are each reference's ``k`` nearest within ``threshold``
    and every pair whose copy fingerprints match (in any orientation), so
    copies are found wherever their embeddings lie. The pixels of both files
    decide each pair's tier (:mod:`lookalike.dedup.tiers`): ``exact``,
    ``same-pixels``, ``resized``, ``edited`` (the copies) or ``similar``.
    A group is a connected set of copies; a look-alike (``similar``) never
    joins two groups, and is listed beside the group it resembles. Only a
    member that is itself a copy of the keeper is ever acted on.

    Parameters
    ----------
    references : lookalike.references.core.References
        A model's references (``model.core``); ``model.find_duplicates`` calls this.
    threshold : float, optional
        Largest embedding distance (in the model's metric) of a candidate
        pair. Default: the value measured for the model's network,
        descriptor and metric (see :data:`DEFAULT_THRESHOLDS`).
    keep : {"resolution", "sharpest", "size", "oldest", "first"}, default "resolution"
        Which photo of a group to keep: the most picture (padding and
        enlargement not counted), the most detail (sharp, least compressed),
        the largest file, the oldest file, or the first in the dataset's
        order. Ties keep the original (see :mod:`lookalike.dedup.keepers`).
    k : int, default 10
        Nearest references looked at per reference (and fingerprints per orientation).
    tiers : str or list of str, optional
        List only members of these tiers (and the groups that keep one).
    decisions : lookalike.dedup.decisions.Decisions, optional
        What a person decided (``model.decisions``): a file marked to keep
        is its group's keeper; a file discarded is acted on; two files
        marked not duplicates are never linked. Decisions on files that have
        changed since are reported and not applied.
    act_on : str or list of str, default the copy tiers
        The tiers of a member's own link to the keeper that make it a
        ``discard``: some of ``exact``, ``same-pixels``, ``resized``, ``edited``.
    keep_in : list of paths
        Folders whose files are never discarded (a keeper is taken from them first).
    sameness : lookalike.dedup.tiers.Sameness, optional
        What judges pairs (and remembers its verdicts); a new one by default.
    verbose : bool, default False
        Show a progress bar over the candidate pairs while they are judged (on a terminal).

    Returns
    -------
    pandas.DataFrame
        One row per listed photo: ``group`` (0 is the largest), ``label``,
        ``keeper`` (bool, the first row of its group), ``action`` (``keep``,
        ``discard`` or ``none``), ``tier`` (a member's strongest link in the
        group; a keeper's, the strongest of its group), ``matched`` and
        ``matched_path`` (the member that link is to), ``similar_to_group``
        (for a look-alike: the group it resembles), ``distance`` (embedding
        distance to the keeper), ``reason`` (why kept, why discarded, why
        left), then ``path``, ``width``, ``height``, ``bytes``, ``mtime``
        where known. Photos without a copy or look-alike are not listed.

    Examples
    --------
    >>> dups = model.find_duplicates()  # doctest: +SKIP
    >>> dups[dups.action == "discard"].path.tolist()  # what a dedup would move  # doctest: +SKIP
    ['photos/IMG_0001 (copy).jpg']
    """
    _options(keep, tiers, act_on)  # a wrong option is told before any candidate is searched for
    with DuplicateFinder(references, threshold, k, sameness) as finder:
        return finder.find(keep=keep, tiers=tiers, decisions=decisions, act_on=act_on, keep_in=keep_in, verbose=verbose)


def _options(keep: str, tiers: str | Sequence[str] | None, act_on: str | Sequence[str]) -> tuple:
    """The keeper policy, the tiers listed and the tiers acted on, checked."""
    wanted = check_tiers(tiers) if tiers is not None else TIERS
    return check_choice("keep", keep, POLICIES), wanted, check_tiers(act_on, COPY_TIERS, "act_on")


#: Largest members of a copy set a photo left out of every set is judged against (see _attach_to_copies).
_ATTACH_TRIES = 2
#: Most times a group's keeper is chosen again after measuring every member against the one chosen before.
_KEEPER_ROUNDS = 3
#: How many pairs ahead of the one a component's grouping waits for are judged meanwhile.
_LOOKAHEAD = 4 * cpu_count()


@dataclass
class _Group:
    """A group before numbering: its keeper first, each member's row values."""

    members: list[int]  # positions, keeper first
    rows: dict[int, dict[str, Any]]  # position -> action, tier, matched, similar_to, reason
    copies: bool  # a group of copies (else of look-alikes only)
    distances: dict[tuple[int, ...], np.ndarray] = field(default_factory=dict)  # members shown -> to the keeper

    def distances_of(self, shown: list[int], references: References) -> np.ndarray:
        """Distances of ``shown`` (the keeper first) to the keeper, measured once per group and members shown."""
        key = tuple(shown)
        if key not in self.distances:
            vectors = references.embeddings
            self.distances[key] = exact_distances_at(
                references.metric, vectors[[shown[0]]], vectors, np.array([shown])
            )[0]
        return self.distances[key]


class DuplicateFinder:
    """The copy groups of one set of references at one threshold, asked for again and again (an explorer's review):
    candidates are found once, verdicts remembered, and a set of candidates is grouped again only when a decision
    about one of its files changed.

    Parameters are those of :func:`find_duplicates`, and ``copy_reach``: how far beyond the threshold (a multiple of
    it) each photo's nearest neighbour is a candidate copy too (1: not beyond; see
    :data:`~lookalike.dedup.candidates.COPY_REACH`). Close it (or use it as a context manager) to release the
    verdicts' database when it opened one itself.
    """

    def __init__(
        self,
        references: References,
        threshold: float | None = None,
        k: int = 10,
        sameness: Sameness | None = None,
        copy_reach: float = COPY_REACH,
    ):
        references = as_references(references)
        if threshold is None:
            threshold = default_threshold(references)
        self.threshold = check_distance("threshold", threshold, references.metric)
        self.k = check_positive_int("k", k)
        self.references = references
        self.paths = references.file_paths()
        self._closing = contextlib.ExitStack()
        self._ahead: ThreadPoolExecutor | None = None  # judges the pairs a component will ask for next
        self._pending: dict[tuple[int, int], Any] = {}
        self._grouping = 0  # components being laid out at once, on the threads of listed()
        self._grouping_lock = threading.Lock()
        if sameness is None:  # verdicts kept between runs, beside the embeddings
            sameness = Sameness(cache=self._closing.enter_context(EmbeddingCache(default_path())))
        self.sameness = sameness
        candidates = candidate_pairs(references, self.threshold, self.k, copy_reach)
        pairs = [tuple(p) for p in candidates.pairs.tolist()]
        order = np.lexsort((candidates.distance, candidates.bits))  # likeliest copies first
        self.pairs = [pairs[i] for i in order]
        # Pairs found by whole fingerprints alone are judged as their fingerprints lay them, without local features.
        self.global_only = {pairs[i] for i in np.flatnonzero(~candidates.local)}
        # Look-alikes are pairs within the threshold: a pair found by its fingerprints alone is a copy or nothing.
        self.close_pairs = {pairs[i] for i in np.flatnonzero(candidates.distance <= self.threshold)}
        # Pairs whose whole fingerprints match: likely copies, judged set by set (see _in_copy_order).
        self.matching_pairs = {pairs[i] for i in np.flatnonzero(candidates.bits <= MATCH_BITS)}
        self.verdicts: dict[tuple[int, int], Verdict] = {}
        self._components = _components(self.pairs)
        self._component_of = {p: i for i, component in enumerate(self._components) for p in component.members}
        self.known_pairs = set(self.pairs)
        self._grouped: dict[tuple, list[_Group]] = {}
        self.layouts: dict[tuple, _Layout] = {}  # each component's copy sets and look-alikes, by its links
        self.copy_groups: dict[tuple, _Group] = {}  # each copy group as built, by its members, links and decisions
        self._facts: dict[str, dict[str, np.ndarray]] = {}
        paths = self.paths
        sameness.recall(
            [(paths[a], paths[b]) for a, b in self.pairs], [pair in self.global_only for pair in self.pairs]
        )

    @functools.cached_property
    def _positions_by_path(self) -> dict[str, int]:
        """Each reference's position by its file's path (what a person's decisions name)."""
        return {os.fspath(p): i for i, p in enumerate(self.references.file_paths()) if p is not None}

    def __enter__(self) -> DuplicateFinder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.sameness.save()
        self._closing.close()

    def verdict(self, a: int, b: int) -> Verdict:
        pair = (min(a, b), max(a, b))
        if pair not in self.verdicts:
            pending = self._pending.pop(pair, None)
            self.verdicts[pair] = pending.result() if pending is not None else self._judge(pair)
        return self.verdicts[pair]

    def prefetch(self, a: int, b: int) -> None:
        """Start judging a pair on the finder's threads: :meth:`verdict` then waits for it, not for all of it."""
        pair = (min(a, b), max(a, b))
        if pair in self.verdicts or pair in self._pending:
            return
        if self._ahead is None:
            self._ahead = self._closing.enter_context(ThreadPoolExecutor(cpu_count()))
        self._pending[pair] = self._ahead.submit(self._judge, pair)

    @property
    def cores_idle(self) -> bool:
        """Whether fewer components are being laid out than there are cores: only then is judging ahead worth it."""
        return self._grouping < cpu_count()

    @contextlib.contextmanager
    def _laying_out(self):
        with self._grouping_lock:
            self._grouping += 1
        try:
            yield
        finally:
            with self._grouping_lock:
                self._grouping -= 1

    def _judge(self, pair: tuple[int, int]) -> Verdict:
        features = pair not in self.global_only
        return self.sameness.verdict(self.paths[pair[0]], self.paths[pair[1]], features)

    def find(self, keep: str = "resolution", **options: Any) -> pd.DataFrame:
        """The groups as :func:`find_duplicates` returns them, with these options (``tiers``, ``decisions``,
        ``act_on``, ``keep_in``, ``verbose``: those of :meth:`listed`)."""
        listed = self.listed(keep, **options)  # checks every option first
        return _table(listed, self.references, self.facts(keep))

    def facts(self, keep: str) -> dict[str, np.ndarray]:
        """Per-reference columns ``keep`` needs (path, width, height, bytes, mtime), read from disk once per finder."""
        if keep not in self._facts:
            self._facts[keep] = _facts(self.references, keep)
        return self._facts[keep]

    def listed(
        self,
        keep: str = "resolution",
        tiers: str | Sequence[str] | None = None,
        decisions: Decisions | None = None,
        act_on: str | Sequence[str] = COPY_TIERS,
        keep_in: Sequence[str | os.PathLike] = (),
        verbose: bool = False,
    ) -> list[Listed]:
        """The groups of :meth:`find`, numbered (0 is the largest; copy groups before groups of look-alikes alone),
        without building its table: what an explorer pages through after each decision. ``verbose``: a progress bar
        over the candidate pairs of the components grouped (on a terminal)."""
        keep, wanted, acted = _options(keep, tiers, act_on)
        facts = self.facts(keep)
        kept_folders = tuple(os.path.realpath(folder) for folder in keep_in)
        decided = _decided(self._positions_by_path, decisions)
        components = _joined(self._components, decided.linked, self._component_of, self.known_pairs)
        about = decided.by_component(components)
        keys = [
            (component, about.get(i, _NOTHING), keep, acted, kept_folders) for i, component in enumerate(components)
        ]

        def group(key: tuple) -> list[_Group]:
            with self._laying_out():
                return _groups_of(key[0], self, facts, keep, acted, list(kept_folders), decided)

        new = [key for key in dict.fromkeys(keys) if key not in self._grouped]
        pairs = sum(len(key[0].pairs) for key in new)
        with tqdm(
            total=pairs, desc="Checking pairs", unit="pair", disable=None if verbose else True, leave=False
        ) as bar:
            if len(new) == 1:  # a decision's regrouping: no thread is started for one component (a fifth of it)
                self._grouped[new[0]] = group(new[0])
                bar.update(pairs)
            elif new:  # components are judged on every core: decoding, local features and OpenCV release the GIL
                with ThreadPoolExecutor(min(cpu_count(), len(new))) as pool:
                    grouping = {pool.submit(group, key): key for key in new}
                    for done in as_completed(grouping):
                        key = grouping[done]
                        self._grouped[key] = done.result()
                        bar.update(len(key[0].pairs))
        self.sameness.save()
        return _numbered([g for key in keys for g in self._grouped[key]], self.references, wanted)


@dataclass(frozen=True)
class _Component:
    """A connected set of candidate pairs (in the order they are judged) and its members; hashed once, as every
    listing after a decision looks each component up (hashing every candidate pair again took a tenth of it)."""

    pairs: tuple[tuple[int, int], ...]
    members: frozenset[int]
    #: The component before a person's discards linked it (its candidate pairs alone); None: it is that already.
    unlinked: _Component | None = field(default=None, compare=False)

    def __hash__(self) -> int:
        return self._hash

    @property
    def candidates(self) -> _Component:
        return self.unlinked or self

    @functools.cached_property
    def _hash(self) -> int:
        return hash(self.pairs)


def _components(pairs: list[tuple[int, int]]) -> list[_Component]:
    """``pairs`` grouped by connected component, each in the order given, components by their first member."""
    from networkx.utils import UnionFind  # networkx costs ~0.2 s to import: only dedup needs it here

    joined = UnionFind()
    for a, b in pairs:
        joined.union(a, b)
    parts: dict[int, list[tuple[int, int]]] = {}
    for pair in pairs:
        parts.setdefault(joined[pair[0]], []).append(pair)
    return _sorted([_Component(tuple(part), frozenset(p for pair in part for p in pair)) for part in parts.values()])


def _sorted(components: list[_Component]) -> list[_Component]:
    return sorted(components, key=lambda component: min(component.members))


def _joined(
    components: list[_Component],
    links: list[tuple[int, int]],
    component_of: dict[int, int],
    known: set[tuple[int, int]],
) -> list[_Component]:
    """The components with a person's links added: a discard ties its file to its keeper, wherever they were.

    Only the components a new link touches are joined (``component_of``: member -> its component's place), so a
    decision costs what it touches, not a pass over every candidate pair."""
    from networkx.utils import UnionFind

    extra = sorted({(min(a, b), max(a, b)) for a, b in links} - known)
    if not extra:
        return components

    def place(member: int) -> tuple[int, int]:  # a component's place, or the member alone after them all
        return (0, component_of[member]) if member in component_of else (1, member)

    joined = UnionFind()
    for a, b in extra:
        joined.union(place(a), place(b))
    merged: dict[tuple[int, int], list[_Component]] = {}  # the components each new one joins
    for where in sorted({place(p) for pair in extra for p in pair}):
        if where[0] == 0:
            merged.setdefault(joined[where], []).append(components[where[1]])
    links_of: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for pair in extra:
        links_of.setdefault(joined[place(pair[0])], []).append(pair)
    new = []
    for root, links in links_of.items():
        parts = merged.get(root, [])
        # What it was before the links: the one component it extends (its pairs' hash kept), or those it joins.
        unlinked = parts[0] if len(parts) == 1 else _Component(*_together(parts))
        pairs, members = _together([unlinked, _Component(tuple(links), frozenset(p for link in links for p in link))])
        new.append(_Component(pairs, members, unlinked))
    touched = {where[1] for pair in extra for where in map(place, pair) if where[0] == 0}
    kept = [component for i, component in enumerate(components) if i not in touched]
    return _sorted(kept + new)


def _together(parts: list[_Component]) -> tuple[tuple[tuple[int, int], ...], frozenset[int]]:
    """The pairs of ``parts`` one after another, and all their members."""
    return tuple(pair for part in parts for pair in part.pairs), frozenset().union(*(part.members for part in parts))


@dataclass
class _Layout:
    """What a component's grouping is before a person's keep and discard decisions: its sets of copies (each with the
    links around it), the look-alikes listed beside a set, the sets that resemble each other, and the groups of
    look-alikes alone. A discard within a set, or a keep, leaves it as it is."""

    links: dict[tuple[int, int], Verdict]
    index: tuple[dict[int, list[tuple[tuple[int, int], Verdict]]], dict[tuple[int, int], int]]
    copy_sets: list[list[int]]
    set_of: dict[int, int]  # member of a copy set -> the set's place
    around: list[tuple[tuple[int, int], ...]]  # each set's links, in order: part of its copy group's key
    beside: dict[int, tuple[int, int]]  # look-alike -> (the member it resembles most, its set's place)
    resembling: list[tuple[int, int, int, int]]  # (member, its set, member of another set, that set)
    lookalikes: list[_Group]


def _groups_of(
    component: _Component,
    judged: DuplicateFinder,
    facts: dict[str, np.ndarray],
    keep: str,
    acted: tuple[str, ...],
    kept_folders: list[str],
    decided: Decided,
) -> list[_Group]:
    """The copy groups and look-alike groups of one component of candidate pairs."""
    inside = component.members
    apart = tuple(sorted(pair for pair in decided.apart if pair[0] in inside or pair[1] in inside))
    # A discard that ties two files of one copy set already (the usual one: a copy of its keeper) changes nothing
    # of the layout of the candidate pairs; one that ties a look-alike or two sets lays the component out again.
    forced = {pair for pair in decided.forced if pair[0] in inside and pair not in decided.apart}
    pairs = component
    candidates = component.candidates if forced - judged.known_pairs else component
    if apart:  # pairs a person kept apart are no links
        pairs, candidates = (
            _Component(tuple(p for p in part.pairs if p not in decided.apart), part.members)
            for part in (pairs, candidates)
        )
    layout = _laid_out(candidates, judged, facts, keep, set(), apart)
    if any(layout.set_of.get(a, -1) != layout.set_of.get(b, -2) for a, b in forced):
        layout = _laid_out(pairs, judged, facts, keep, forced, apart)
    keys = []
    for members, around in zip(layout.copy_sets, layout.around, strict=True):
        # A group is built again only when its links or the decisions about its members changed: a decision in a
        # large component of look-alikes rebuilds the one group it is about.
        about = decided.about(set(members)) if not decided.mentioned.isdisjoint(members) else _NOTHING
        keys.append((tuple(members), around, about, keep, acted, tuple(kept_folders)))
    new = [key for key in keys if key not in judged.copy_groups]

    def build(key: tuple) -> _Group:
        return _copy_group(list(key[0]), layout.links, layout.index, judged, facts, keep, acted, kept_folders, decided)

    # The groups of a large component are built on every idle core: each measures its members against its keeper.
    if len(new) > 1 and judged.cores_idle:
        with ThreadPoolExecutor(cpu_count()) as pool:
            judged.copy_groups.update(zip(new, pool.map(build, new), strict=True))
    else:
        judged.copy_groups.update((key, build(key)) for key in new)
    built = []
    for key in keys:
        made = judged.copy_groups[key]  # copied: look-alikes and group references are added to it below
        built.append(_Group(list(made.members), dict(made.rows), True, made.distances))
    for lone, (other, number) in layout.beside.items():
        built[number].members.append(lone)
        built[number].rows[lone] = _row("none", "similar", other, None, links_reason(layout.links, lone, other))
    for a, set_a, b, set_b in layout.resembling:  # copy groups that resemble each other say so
        for member, place, other_place in ((a, set_a, set_b), (b, set_b, set_a)):
            rows = built[place].rows
            if "similar_to" not in rows[member]:  # a new row: the built group's own rows are shared, never changed
                rows[member] = {**rows[member], "similar_to": built[other_place]}
    return built + layout.lookalikes


def _laid_out(
    component: _Component,
    judged: DuplicateFinder,
    facts: dict[str, np.ndarray],
    keep: str,
    forced: set[tuple[int, int]],
    apart: tuple[tuple[int, int], ...],
) -> _Layout:
    """The component's layout, made once per pairs, forced links, pairs kept apart and keeper policy."""
    key = (component, tuple(sorted(forced)), apart, keep)
    if key not in judged.layouts:
        judged.layouts[key] = _layout(component.pairs, judged, facts, keep, forced, set(apart))
    return judged.layouts[key]


def _layout(
    pairs: Sequence[tuple[int, int]],
    judged: DuplicateFinder,
    facts: dict[str, np.ndarray],
    keep: str,
    forced: set[tuple[int, int]],
    apart: set[tuple[int, int]],
) -> _Layout:
    """Judge a component's pairs (those a copy link already joined need no verdict) and lay it out."""
    from networkx.utils import UnionFind

    copies = UnionFind()
    links: dict[tuple[int, int], Verdict] = {}
    likeliest = functools.partial(_original_rank, facts)
    original: dict[int, int] = {}  # a copy set's root -> its likeliest original

    def through_originals(a: int, b: int) -> tuple[int, int]:
        a, b = original.get(copies[a], a), original.get(copies[b], b)
        return (a, b) if a < b else (b, a)

    def join(a: int, b: int) -> None:
        best = min(original.get(copies[a], a), original.get(copies[b], b), key=likeliest)
        copies.union(a, b)
        original[copies[a]] = best

    # A photo joins a set of copies through the set's likeliest original, the keeper it will be measured against
    # anyway: linked copy to copy, most members of a group were judged twice (a third of all verdicts on 12,275
    # photos, see docs/dedup.md).
    pairs = _in_copy_order(pairs, judged.matching_pairs, likeliest)
    ahead = 0  # pairs up to here were handed to the finder's threads
    for place, (a, b) in enumerate(pairs):
        if (a, b) in forced:
            links[(a, b)] = judged.verdict(a, b)
            join(a, b)
        elif copies[a] != copies[b]:  # two members already joined by copies need no verdict of their own
            first = through_originals(a, b)
            # While a core has no component of its own (a large component of look-alikes laid out last, a decision's
            # regrouping), the next few pairs still needing a verdict are judged on it meanwhile. Not otherwise: in a
            # group of copies most pairs ahead are joined by copies before their turn, and judged for nothing (half
            # of all verdicts on 100 neardup groups).
            if first not in judged.verdicts and judged.cores_idle:  # a regrouping after a decision knows them all
                ahead = max(ahead, place + 1)
                while ahead < min(len(pairs), place + _LOOKAHEAD):
                    c, d = pairs[ahead]
                    if copies[c] != copies[d]:
                        judged.prefetch(*through_originals(c, d))
                    ahead += 1
            if first != (a, b) and first not in links:
                links[first] = verdict = judged.verdict(*first)
                if verdict.is_copy:
                    join(*first)
                    continue
            links[(a, b)] = verdict = judged.verdict(a, b)
            if verdict.is_copy:
                join(a, b)
    _attach_to_copies(pairs, copies, links, judged, facts, apart)
    members = sorted({p for pair in pairs for p in pair})
    sets: dict[int, list[int]] = {}
    for position in members:
        sets.setdefault(copies[position], []).append(position)
    copy_sets = [g for g in sets.values() if len(g) > 1]
    grouped = {p: i for i, g in enumerate(copy_sets) for p in g}
    touching, order = _by_member(links), {pair: place for place, pair in enumerate(links)}
    around = [tuple(_around(g, touching, order)) for g in copy_sets]
    # Look-alikes: a photo in no copy group beside the group it is closest to; the rest in groups of their own.
    similar = [(a, b) for (a, b), v in links.items() if not v.is_copy and (a, b) in judged.close_pairs]
    beside = [(lone, other) for a, b in similar for lone, other in ((a, b), (b, a)) if other in grouped]
    beside = [(lone, other) for lone, other in beside if lone not in grouped]
    nearest: dict[int, tuple[float, int, int]] = {}
    for (lone, other), distance in zip(beside, _distances(judged, beside).tolist(), strict=True):
        if lone not in nearest or distance < nearest[lone][0]:
            nearest[lone] = (distance, other, grouped[other])
    resembling = [
        (a, grouped[a], b, grouped[b]) for a, b in similar if a in grouped and b in grouped and grouped[a] != grouped[b]
    ]
    rest = UnionFind()
    for a, b in similar:
        if a not in grouped and b not in grouped and a not in nearest and b not in nearest:
            rest.union(a, b)
    lookalikes = [
        _lookalike_group(sorted(group), links, (touching, order), judged, facts, keep) for group in rest.to_sets()
    ]
    return _Layout(
        links,
        (touching, order),
        copy_sets,
        grouped,
        around,
        {lone: (other, number) for lone, (_, other, number) in nearest.items()},
        resembling,
        lookalikes,
    )


def _in_copy_order(
    pairs: Sequence[tuple[int, int]], matching: set[tuple[int, int]], likeliest: Any
) -> list[tuple[int, int]]:
    """``pairs`` in the order a component is judged: set by set of photos joined by matching fingerprints (likely
    copies), each set's pairs from its likeliest original (``likeliest``: a sort key of positions) followed by the
    other pairs that touch it; then the pairs that touch no set. A set's photos are judged together while their
    pictures and local features are still cached: in order of likeliness alone, a large component of look-alikes
    decoded an original again for most of its copies."""
    from networkx.utils import UnionFind

    sets = UnionFind()
    for pair in matching.intersection(pairs):
        sets.union(*pair)
    set_of = {position: sets[position] for position in list(sets.parents)}
    members: dict[int, list[int]] = {}
    for position, root in set_of.items():
        members.setdefault(root, []).append(position)
    anchors = {root: min(group, key=likeliest) for root, group in members.items()}
    order: dict[int, int] = {}  # each set's place: where its first pair is
    for pair in pairs:
        for root in map(set_of.get, pair):
            if root is not None:
                order.setdefault(root, len(order))

    def place(pair: tuple[int, int]) -> tuple:
        roots = [set_of.get(p) for p in pair]
        ranked = [(order[root], root) for root in roots if root is not None]
        if not ranked:
            return (len(order), False, False)
        first, root = min(ranked)
        return (first, roots[0] != roots[1], anchors[root] not in pair)

    return sorted(pairs, key=place)


def _original_rank(facts: dict[str, np.ndarray], position: int) -> tuple:
    """Sorts the likeliest original of a set of copies first, as the keepers' tie-break does: the member a group's
    first keeper round measures the others against. Not the most pixels: a copy turned onto a larger canvas or
    letterboxed has more than its original."""
    mtime, size = _file_facts(facts, position)
    return original_key(mtime, str(facts["sort_name"][position]), size, position)


def _file_facts(facts: dict[str, np.ndarray], position: int) -> tuple[float, int]:
    """A reference's file's modification time (infinite when unknown: sorted last) and size in bytes (-1)."""
    mtime = float(facts["mtime"][position]) if "mtime" in facts else math.nan
    size = int(facts["bytes"][position]) if "bytes" in facts else -1
    return (math.inf if math.isnan(mtime) else mtime), size


def _attach_to_copies(
    pairs: list[tuple[int, int]],
    copies: Any,
    links: dict[tuple[int, int], Verdict],
    judged: DuplicateFinder,
    facts: dict[str, np.ndarray],
    apart: set[tuple[int, int]],
) -> None:
    """Judge each photo left out of the copy sets against the largest members of a set it is a candidate of.

    A copy's nearest neighbours are often the other copies of its original rather than the original, and a
    heavy crop aligns with the original only (not with a shrunken or turned copy of it): judged against
    those alone, it would lie beside the group as a look-alike. The largest pictures of a set are its likeliest
    originals; ``_ATTACH_TRIES`` of them are tried.
    """
    sets: dict[Any, list[int]] = {}
    for position in sorted({p for pair in pairs for p in pair}):
        sets.setdefault(copies[position], []).append(position)
    set_of = {position: members for members in sets.values() for position in members}
    pixels = facts["pixels"]
    for lone, other in [*pairs, *((b, a) for a, b in pairs)]:
        if len(set_of[lone]) > 1 or len(set_of[other]) < 2:
            continue
        for member in sorted(set_of[other], key=lambda p: (-int(pixels[p]), p))[:_ATTACH_TRIES]:
            pair = (min(lone, member), max(lone, member))
            if pair in apart:
                continue
            links[pair] = verdict = judged.verdict(*pair)  # the finder keeps every verdict it gave
            if verdict.is_copy:
                copies.union(lone, member)
                joined = set_of[other] + [lone]
                set_of.update(dict.fromkeys(joined, joined))
                break


def links_reason(links: dict[tuple[int, int], Verdict], a: int, b: int) -> str:
    verdict = links.get((min(a, b), max(a, b)))
    return verdict.reason if verdict is not None else ""


def _distance(judged: DuplicateFinder, a: int, b: int) -> float:
    return float(_distances(judged, [(a, b)])[0])


def _distances(judged: DuplicateFinder, pairs: list[tuple[int, int]]) -> np.ndarray:
    """The embedding distance of each pair of reference positions, measured in one pass."""
    if not pairs:
        return np.zeros(0)
    vectors = judged.references.embeddings
    first, second = np.array(pairs, np.int64).T
    return exact_distances_at(judged.references.metric, vectors[first], vectors, second[:, None])[:, 0]


def _row(action: str, tier: str, matched: int | None, similar_to: Any, reason: str) -> dict[str, Any]:
    row = {"action": action, "tier": tier, "matched": matched, "reason": reason}
    if similar_to is not None:
        row["similar_to"] = similar_to
    return row


def _members(
    positions: list[int],
    links: dict[tuple[int, int], Verdict],
    judged: DuplicateFinder,
    facts: dict[str, np.ndarray],
    kept_folders: list[str],
    decided: Decided,
    keep: str,
    anchor: int | None = None,
) -> list[Member]:
    """What the keeper policies need of each of ``positions``: pixels of picture as the copy links measured them
    (canvas never counted), shape, and their pixels' measures (read only when two are compared). ``anchor``: the
    group's likeliest original, whose link to each member tells best what of it is picture."""
    out = []
    touching = _by_member(links)
    for position in positions:
        path = judged.paths[position]
        mtime, size = _file_facts(facts, position)
        member = Member(
            position=position,
            path=path,
            name=str(facts["sort_name"][position]),
            pixels=int(facts["pixels"][position]),
            bytes=size,
            mtime=mtime,
            identity=judged.sameness.identity(path) if path is not None else -1,
            kept=position in decided.kept or _inside(path, kept_folders),
        )
        member.shares = {
            b if a == position else a: v.pictures[0 if position == a else 1]
            for (a, b), v in touching.get(position, ())
            if v.pictures
        }
        member.regions = {
            b if a == position else a: v.regions[0 if position == a else 1]
            for (a, b), v in touching.get(position, ())
            if v.regions
        }
        # What a member holds beside the likeliest original, which shows the whole scene: canvas (a letterbox's bars,
        # a turn's corners) lies outside it. Beside a crop, a plain sky outside the crop looks like canvas too: the
        # least share over all links made an original less picture than its copies, the median made a turned copy
        # more than it has (beside its many crops). The likeliest original itself: the median; a member not linked
        # to it: the least.
        member.picture = member.pixels * _picture_share(member.shares, position, anchor)
        member.resized = frozenset(
            b if a == position else a for (a, b), v in touching.get(position, ()) if v.tier == "resized"
        )
        out.append(member)
    if keep in ("resolution", "sharpest"):
        for member in out:
            width, height = facts["width"][member.position], facts["height"][member.position]
            member.shape = float(width) / max(float(height), 1.0)
            if member.path is not None:
                member.measures = Measures(
                    functools.partial(judged.sameness.measure, member.path),
                    functools.partial(judged.sameness.reproduced, member.path),
                    functools.partial(judged.sameness.enlarged_from, member.path),
                    functools.partial(judged.sameness.shown_beside, member.path),
                )
    return out


def _picture_share(shares: dict[int, float], position: int, anchor: int | None) -> float:
    """The share of the member at ``position`` that is picture, from its shares beside the others (see
    :func:`_members`)."""
    if anchor in shares:
        return shares[anchor]
    if not shares:
        return 1.0
    return float(np.median(list(shares.values()))) if position == anchor else min(shares.values())


def _by_member(links: dict[tuple[int, int], Verdict]) -> dict[int, list[tuple[tuple[int, int], Verdict]]]:
    """Each member's links, in the order of ``links`` (a large component's members look theirs up once)."""
    touching: dict[int, list[tuple[tuple[int, int], Verdict]]] = {}
    for pair, verdict in links.items():
        for position in pair:
            touching.setdefault(position, []).append((pair, verdict))
    return touching


def _around(
    positions: list[int], touching: dict[int, list[tuple[tuple[int, int], Verdict]]], order: dict[tuple[int, int], int]
) -> dict[tuple[int, int], Verdict]:
    """The links touching any of ``positions``, in their component's order (``order``: pair -> place): all a group's
    members need of their component's links, which is what ties between equally strong links are broken by."""
    found = {pair: verdict for position in positions for pair, verdict in touching.get(position, ())}
    return {pair: found[pair] for pair in sorted(found, key=order.__getitem__)}


def _same_file(a: str | None, b: str | None) -> bool:
    """Whether two paths lead to one file (a hard or symbolic link): discarding one would touch the other."""
    try:
        return a is not None and b is not None and os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: str | None, folders: list[str]) -> bool:
    if path is None or not folders:
        return False
    real = os.path.realpath(path)
    return any(real == f or real.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def _copy_group(
    positions: list[int],
    links: dict[tuple[int, int], Verdict],
    index: tuple[dict[int, list[tuple[tuple[int, int], Verdict]]], dict[tuple[int, int], int]],
    judged: DuplicateFinder,
    facts: dict[str, np.ndarray],
    keep: str,
    acted: tuple[str, ...],
    kept_folders: list[str],
    decided: Decided,
) -> _Group:
    local = _around(positions, *index)
    # The first round measures every member against the likeliest original (the earliest, plainest name), so that
    # each is compared with it as their own link measured them.
    keeper = anchor = min(
        _members(positions, local, judged, facts, kept_folders, decided, "first"), key=original_order
    ).position
    for _ in range(_KEEPER_ROUNDS):
        # Each round measures every member against the keeper chosen so far, which tells what a chain of copy
        # links could not (a turned copy's corners are canvas only beside the original).
        if keeper is not None:
            for position in positions:
                if position != keeper:
                    pair = (min(position, keeper), max(position, keeper))
                    local[pair] = links[pair] = judged.verdict(position, keeper)
        members = _members(positions, local, judged, facts, kept_folders, decided, keep, anchor)
        _join_same_pixels(members, local)
        eligible = [m for m in members if m.position not in decided.discarded] or members
        ranked, why = rank(eligible, keep)
        if ranked[0].position == keeper:
            break
        keeper = ranked[0].position
    strongest = "similar"
    rows: dict[int, dict[str, Any]] = {}
    touching = _by_member(local)
    for member in members:
        position = member.position
        if position == keeper:
            continue
        direct = judged.verdict(position, keeper)
        best_tier, best_other = direct.tier, keeper
        for (a, b), verdict in touching.get(position, ()):
            if verdict.is_copy and TIERS.index(verdict.tier) < TIERS.index(best_tier):
                best_tier, best_other = verdict.tier, b if a == position else a
        strongest = stronger(strongest, best_tier)
        if _same_file(judged.paths[position], judged.paths[keeper]):
            action, reason = "none", "the keeper itself under another name (a link to the same file)"
        elif position in decided.discarded:
            action, reason = "discard", f"you marked it a duplicate; {direct.reason}"
        elif member.kept:
            action, reason = "none", "kept by you (or in a folder kept whole)"
        elif direct.tier in acted:
            action, reason = "discard", f"a copy of the keeper: {direct.reason}"
        else:
            action = "none"
            reason = (
                f"a copy of {judged.paths[best_other] or best_other}, not of the keeper ({direct.reason})"
                if best_other != keeper
                else f"{direct.tier}, not acted on ({direct.reason})"
            )
        rows[position] = _row(action, best_tier, best_other, None, reason)
    rows[keeper] = _row("keep", strongest, None, None, why)
    return _Group([keeper] + [p for p in positions if p != keeper], rows, copies=True)


def _join_same_pixels(members: list[Member], links: dict[tuple[int, int], Verdict]) -> None:
    """Members with the same pixels (a re-saved PNG) get one identity: one picture to the keeper policies. Every file
    of that picture gets it, the original, its byte copies and its re-saved PNG alike: joined pair by pair, a byte copy
    kept the identity the PNG's link had replaced, and was kept over the original as more picture."""
    from networkx.utils import UnionFind

    by_position = {m.position: m for m in members}
    pictures = UnionFind()
    for (a, b), verdict in links.items():
        if verdict.tier != "same-pixels" or a not in by_position or b not in by_position:
            continue
        if by_position[a].identity >= 0 and by_position[b].identity >= 0:
            pictures.union(by_position[a].identity, by_position[b].identity)
    joined = {identity: min(group) for group in pictures.to_sets() for identity in group}
    for member in members:
        member.identity = joined.get(member.identity, member.identity)


def _lookalike_group(
    positions: list[int],
    links: dict[tuple[int, int], Verdict],
    index: tuple[dict[int, list[tuple[tuple[int, int], Verdict]]], dict[tuple[int, int], int]],
    judged: DuplicateFinder,
    facts: dict[str, np.ndarray],
    keep: str,
) -> _Group:
    touching = index[0]
    members = _members(positions, _around(positions, *index), judged, facts, [], Decided(), keep)
    ranked, _ = rank(members, keep)
    first = ranked[0].position
    rows = {first: _row("none", "similar", None, None, "look-alikes, no copy among them")}
    for position in positions:
        if position == first:
            continue
        linked = [b if a == position else a for (a, b), _ in touching.get(position, ())]
        other = min(linked, key=lambda o: _distance(judged, position, o)) if linked else first
        rows[position] = _row("none", "similar", other, None, links_reason(links, position, other))
    return _Group([first] + [p for p in positions if p != first], rows, copies=False)


class Listed:
    """A group as :meth:`DuplicateFinder.listed` numbers it: the members shown (keeper first), each one's row
    (``action``, ``tier``, ``matched`` position, ``similar_to_group`` number, ``reason``) and distance to the keeper.

    Rows and distances are made when first read: an explorer reads those of the page it shows."""

    def __init__(self, group: _Group, members: list[int], numbers: dict[int, int], references: References):
        self.members = members
        self._group, self._numbers, self._references = group, numbers, references

    @functools.cached_property
    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for position in self.members:
            row = self._group.rows[position]
            similar_to = row.get("similar_to")
            if similar_to is None and row["tier"] == "similar" and self._group.copies:
                similar_to = self._group  # a look-alike listed with a group resembles that group
            rows.append(
                {
                    "action": row["action"],
                    "tier": row["tier"],
                    "matched": row["matched"],
                    "similar_to_group": self._numbers.get(id(similar_to)) if similar_to is not None else None,
                    "reason": row["reason"],
                }
            )
        return rows

    @functools.cached_property
    def distances(self) -> np.ndarray:
        distances = np.array(self._group.distances_of(self.members, self._references), np.float64)
        distances[0] = 0.0
        return distances


def _numbered(built: list[_Group], references: References, wanted: tuple[str, ...]) -> list[Listed]:
    """The groups numbered largest first (copy groups before groups of look-alikes alone); members of tiers not
    ``wanted`` left out, and groups left with their keeper only."""
    listed = []
    for group in built:
        shown = group.members
        if wanted != TIERS:
            shown = [shown[0]] + [p for p in shown[1:] if group.rows[p]["tier"] in wanted]
        if len(shown) > 1:
            listed.append((group, shown))
    listed.sort(key=lambda item: (not item[0].copies, -len(item[1]), min(item[1])))
    numbers = {id(group): i for i, (group, _) in enumerate(listed)}
    return [Listed(group, shown, numbers, references) for group, shown in listed]


def _table(listed: list[Listed], references: References, facts: dict[str, np.ndarray]) -> pd.DataFrame:
    """The numbered groups as the table :func:`find_duplicates` returns."""
    sizes = [len(group.members) for group in listed]
    positions = np.array([p for group in listed for p in group.members], np.int64)
    keeper = np.array([i == 0 for size in sizes for i in range(size)], bool)  # each group's first row
    rows = [row for group in listed for row in group.rows]
    matched = [row["matched"] for row in rows]
    labels = references.labels
    paths = facts.get("path")
    table = pd.DataFrame(
        {
            "group": np.repeat(np.arange(len(listed), dtype=np.int64), sizes),
            "label": labels[positions],
            "keeper": keeper,
            "action": [row["action"] for row in rows],
            "tier": [row["tier"] for row in rows],
            "matched": pd.array([labels[m] if m is not None else None for m in matched], dtype=object),
            "matched_path": text_column([paths[m] if m is not None and paths is not None else None for m in matched]),
            "similar_to_group": pd.array([row["similar_to_group"] for row in rows], dtype="Int64"),
            "distance": np.concatenate([np.zeros(0)] + [group.distances for group in listed]),
            "reason": [row["reason"] for row in rows],
        }
    )
    for column in ("path", "width", "height", "bytes", "mtime"):
        if column in facts:
            values = facts[column][positions]
            table[column] = text_column(values.tolist()) if column == "path" else values
    return table


#: What :meth:`Decided.about` says of members no decision concerns.
_NOTHING: tuple = ((), (), (), ())


@dataclass
class Decided:
    """A person's decisions as reference positions: pairs kept apart, files kept, files discarded and their links."""

    apart: set[tuple[int, int]] = field(default_factory=set)
    kept: set[int] = field(default_factory=set)
    discarded: set[int] = field(default_factory=set)
    linked: list[tuple[int, int]] = field(default_factory=list)

    @functools.cached_property
    def forced(self) -> set[tuple[int, int]]:
        """The pairs a discard links, as ``(smaller, larger)``."""
        return {(min(a, b), max(a, b)) for a, b in self.linked}

    @functools.cached_property
    def mentioned(self) -> set[int]:
        """Every position a decision names."""
        return {p for pair in self.apart | set(self.linked) for p in pair} | self.kept | self.discarded

    def by_component(self, components: list[_Component]) -> dict[int, tuple]:
        """:meth:`about` each component a decision concerns, by its place in ``components``."""
        if not self.mentioned:
            return {}
        places = {i for i, component in enumerate(components) if not self.mentioned.isdisjoint(component.members)}
        return {i: self.about(components[i].members) for i in places}

    def about(self, members: set[int] | frozenset[int]) -> tuple:
        """The decisions that concern ``members``: what a regrouping of them depends on."""
        return (
            tuple(sorted(p for p in self.apart if p[0] in members)),
            tuple(sorted(self.kept & members)),
            tuple(sorted(self.discarded & members)),
            tuple(sorted(p for p in self.linked if p[0] in members)),
        )


def _decided(where: dict[str, int], decisions: Decisions | None) -> Decided:
    """What the still-valid decisions say about the references at ``where`` (file path -> position)."""
    decided = Decided()
    if decisions is None or not len(decisions):
        return decided
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
    needs = {
        "resolution": ("width", "height"),
        "sharpest": ("width", "height"),
        "size": ("bytes",),
        "oldest": ("mtime",),
        "first": (),
    }[keep]
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


def summary_text(duplicates: pd.DataFrame, action: str = "move") -> str:
    """The dry run in words: each group's keeper and why, each other member's tier, what it was matched to and
    what will be done with it; counts per tier; and "would move N files (X MB)", exactly the files ``action``
    (``"move"``, ``"move to the trash"``, ``"delete"``) would touch."""
    if duplicates.empty:
        return "no copies or look-alikes found"
    shown = escaped_frame(duplicates)
    name = "path" if "path" in shown.columns else "label"
    matched = "matched_path" if name == "path" else "matched"
    lines = []
    for number, group in shown.groupby("group", sort=True):
        keeper = group[group["keeper"]].iloc[0]
        kind = "copies" if (group["tier"] != "similar").any() and keeper["action"] == "keep" else "look-alikes"
        lines.append(
            f"group {number + 1} ({len(group)} {kind}): keep {keeper[name]}{_size(keeper)}: {keeper['reason']}"
        )
        for row in group[~group["keeper"]].itertuples():
            what = {"discard": "discard", "none": "leave"}[row.action]
            other = getattr(row, matched)
            to = f" of {other}" if isinstance(other, str) and other != keeper[name] else ""
            lines.append(
                f"    {what:7s} {row.tier:11s} {getattr(row, name)}{_size(row._asdict())}  {row.tier}{to}: {row.reason}"
            )
    counts = shown.loc[~shown["keeper"], "tier"].value_counts()
    tiers = ", ".join(f"{int(counts[t])} {t}" for t in TIERS if t in counts)
    lines.append(f"{shown['group'].nunique()} groups: {tiers}")
    acted = duplicates[duplicates["action"] == "discard"]
    size = acted["bytes"].clip(lower=0).sum() if "bytes" in acted else 0
    lines.append(
        f"would {action} {len(acted)} files" + (f" ({size / 1e6:.1f} MB)" if size else "") + "; the others stay"
    )
    return "\n".join(lines)


def _size(row: Any) -> str:
    if "width" in row and "bytes" in row:
        return f" ({int(row['width'])}x{int(row['height'])}, {int(row['bytes']):,} bytes)"
    return ""
