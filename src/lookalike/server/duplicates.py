"""Groups of near-duplicate references: connected components of the similarity graph cut at a distance."""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx


@dataclass(frozen=True)
class DuplicateGroup:
    """Labels of references that are linked by a chain of edges no longer than the threshold."""

    labels: list
    max_distance: float  # the longest link inside the group


def duplicate_groups(model, threshold: float, k: int = 10) -> list[DuplicateGroup]:
    """Near-duplicate groups of a model's references, largest first.

    Parameters
    ----------
    model : lookalike.ImageSimilarityModel
    threshold : float
        Largest distance (in the model's metric) between two linked images.
    k : int, default 10
        Neighbours looked at per image: a group larger than ``k + 1`` is
        still found whole through chains of links.

    Examples
    --------
    >>> groups = duplicate_groups(model, threshold=5.0)  # doctest: +SKIP
    >>> groups[0].labels, groups[0].max_distance         # doctest: +SKIP
    ([12, 40], 3.2)
    """
    edges = model.similarity_graph(k=k, radius=threshold, output_type="table")
    graph = nx.Graph()
    graph.add_weighted_edges_from(
        zip(edges["__src_id"].tolist(), edges["__dst_id"].tolist(), edges["distance"].tolist(), strict=True),
        weight="distance",
    )
    order = {label: position for position, label in enumerate(model.labels.tolist())}
    groups = []
    for component in nx.connected_components(graph):
        links = graph.subgraph(component).edges(data="distance")
        groups.append(DuplicateGroup(sorted(component, key=order.__getitem__), max(d for _, _, d in links)))
    groups.sort(key=lambda g: (-len(g.labels), order[g.labels[0]]))
    return groups
