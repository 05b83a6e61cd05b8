"""Export a model as one ONNX file that runs the whole query: pixels in, top-k references out.

Turi Create's Core ML export returned the distance to every reference and
left the ranking to the app. Here the graph is the embedding network (with
its pixel normalisation, see :mod:`lookalike.embed.frontend`), the distances
to the reference embeddings (stored in the file) and a ``TopK``, so an app
with ONNX Runtime (mobile, web, any language) needs no Python and no index.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lookalike.embed.frontend import PIXELS, embedding_graph
from lookalike.embed.registry import ModelSpec
from lookalike.errors import InvalidArgument
from lookalike.ingest.names import escaped
from lookalike.references.core import References, as_references
from lookalike.store.files import write_bytes_atomic
from lookalike.validation import check_positive_int
from lookalike.version import __version__

DISTANCES = "distances"
INDICES = "indices"


def _search_nodes(metric: str, embedding: str, references: np.ndarray, k: int) -> tuple[list, list]:
    """Nodes and initializers: (batch, d) ``embedding`` -> ``distances``/``indices`` (batch, k), nearest first."""
    from onnx import helper, numpy_helper

    refs = references.astype(np.float64)
    nodes = [helper.make_node("Flatten", [embedding], ["export/q"], axis=1)]
    query = "export/q"
    if metric == "cosine":
        norms = np.linalg.norm(refs, axis=1, keepdims=True)
        refs = np.divide(refs, norms, out=np.zeros_like(refs), where=norms > 0)
        nodes += [
            helper.make_node("Mul", ["export/q", "export/q"], ["export/q2"]),
            helper.make_node("MatMul", ["export/q2", "export/ones"], ["export/sq"]),
            helper.make_node("Sqrt", ["export/sq"], ["export/norm"]),
            helper.make_node("Max", ["export/norm", "export/eps"], ["export/safe_norm"]),
            helper.make_node("Div", ["export/q", "export/safe_norm"], ["export/unit"]),
        ]
        query = "export/unit"
    nodes.append(helper.make_node("MatMul", [query, "export/references_t"], ["export/dots"]))
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(refs.T, dtype=np.float32), "export/references_t"),
        numpy_helper.from_array(np.ones((references.shape[1], 1), np.float32), "export/ones"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "export/eps"),
        numpy_helper.from_array(np.array([k], np.int64), "export/k"),
    ]
    if metric == "euclidean":
        # |q - r|^2 = |q|^2 - 2 q.r + |r|^2, clipped at 0 against rounding, then sqrt.
        nodes += [
            helper.make_node("Mul", ["export/q", "export/q"], ["export/q2"]),
            helper.make_node("MatMul", ["export/q2", "export/ones"], ["export/sq"]),
            helper.make_node("Mul", ["export/dots", "export/minus_two"], ["export/cross"]),
            helper.make_node("Add", ["export/cross", "export/sq"], ["export/partial"]),
            helper.make_node("Add", ["export/partial", "export/ref_sq"], ["export/d2"]),
            helper.make_node("Max", ["export/d2", "export/zero"], ["export/d2_clipped"]),
            helper.make_node("Sqrt", ["export/d2_clipped"], ["export/distance"]),
        ]
        inits += [
            numpy_helper.from_array(np.array(-2.0, np.float32), "export/minus_two"),
            numpy_helper.from_array(np.array(0.0, np.float32), "export/zero"),
            numpy_helper.from_array((refs**2).sum(1)[None, :].astype(np.float32), "export/ref_sq"),
        ]
    elif metric == "cosine":
        nodes.append(helper.make_node("Sub", ["export/one", "export/dots"], ["export/distance"]))
        inits.append(numpy_helper.from_array(np.array(1.0, np.float32), "export/one"))
    else:  # dot: -q.r
        nodes.append(helper.make_node("Neg", ["export/dots"], ["export/distance"]))
    nodes.append(
        helper.make_node("TopK", ["export/distance", "export/k"], [DISTANCES, INDICES], axis=1, largest=0, sorted=1)
    )
    return nodes, inits


def export_metadata(references: References, spec: ModelSpec, k: int) -> dict[str, str]:
    """What an exported program records about itself (ONNX metadata props, Core ML user metadata).

    ``lookalike.labels`` and, for references that are files, ``lookalike.paths`` are JSON lists in the order of
    the references: an app maps each returned index to the file it names (the labels are row numbers unless the
    model was made with ``label=``).
    """
    metadata = {
        "lookalike.version": __version__,
        "lookalike.model": spec.name,
        "lookalike.precision": spec.precision,
        "lookalike.descriptor": json.dumps(spec.descriptor.to_dict()),
        "lookalike.metric": references.metric,
        "lookalike.k": str(k),
        "lookalike.labels": json.dumps(references.labels.tolist(), default=str),
        "lookalike.preprocessing": json.dumps(spec.preprocessing.to_dict()),
    }
    paths = references.path_array()
    if paths is not None:  # names that are not UTF-8 are shown escaped, as everywhere people read them
        metadata["lookalike.paths"] = json.dumps([escaped(p) for p in paths.tolist()])
    return metadata


def export_onnx(references: References, path: str | os.PathLike, k: int = 5) -> Path:
    """Write a model's references as one ONNX file answering "which k references look most like this image?".

    Parameters
    ----------
    references : lookalike.references.core.References
        The references (``model.core``; ``model.export_onnx`` calls this) of a model built from images (not from precomputed embeddings) whose
        descriptor is computed inside the network's graph: ``"gem"`` (the
        default), ``"plain"``, or options without ``whiten`` (GeM, mirror
        image and several scales are exported as they are embedded). Whitened
        descriptors (``"fast"``, ``"best"``) and learned projections are refused.
    path : path
        The ``.onnx`` file to write (atomically).
    k : int, default 5
        Neighbours returned per image (at most the number of references).

    Returns
    -------
    pathlib.Path
        ``path``. Input ``pixels``: uint8 (batch, H, W, 3) RGB, resized as the
        ``lookalike.preprocessing`` metadata says (H, W: the largest of the
        descriptor's scales; the graph makes the smaller ones). Outputs ``distances``
        (float32, batch × k, the model's metric, nearest first) and
        ``indices`` (int64 positions into the ``lookalike.labels`` metadata, and into ``lookalike.paths``, the
        references' files, when they are files).

    Examples
    --------
    >>> model.export_onnx("search.onnx", k=5)  # doctest: +SKIP
    >>> import onnxruntime as ort
    >>> ort.InferenceSession("search.onnx").run(None, {"pixels": batch})  # doctest: +SKIP
    """
    references = as_references(references)
    import onnx
    from onnx import TensorProto, helper
    from onnx.utils import Extractor

    k = check_positive_int("k", k)
    spec = references.embedder.spec
    # The graph computes what the embedder's graph computes: pooling, mirror image, scales, unit length. A
    # whitening or LDA projection is fitted outside it: refuse rather than export embeddings unlike the references'.
    if spec.descriptor.whiten or references.projection is not None:
        raise InvalidArgument(
            "ONNX export supports descriptors computed inside the network's graph (no whitening) and no learned "
            f"projection; this model uses descriptor {spec.descriptor.to_dict()} and projection "
            f"{references.projection.kind if references.projection is not None else None}: rebuild it with "
            'descriptor="gem" (the default) or "plain" to export it'
        )
    k = min(k, len(references))
    graph_model = embedding_graph(spec)  # the embedder's own graph, so the vectors are the references'
    graph = graph_model.graph
    nodes, inits = _search_nodes(references.metric, spec.output_name, references.embeddings, k)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(DISTANCES, TensorProto.FLOAT, ["batch", k]),
            helper.make_tensor_value_info(INDICES, TensorProto.INT64, ["batch", k]),
        ]
    )
    # Keep only what the two outputs need: the classifier head and the unpooled output go.
    graph_model = Extractor(graph_model).extract_model([PIXELS], [DISTANCES, INDICES])
    width, height = spec.pixel_size
    metadata = {
        **export_metadata(references, spec, k),
        "lookalike.preprocessing": json.dumps(
            {
                **spec.preprocessing.to_dict(),
                "input": f"{PIXELS}: uint8 (batch, {height}, {width}, 3) RGB; resize as 'resize' says, the graph normalises",
            }
        ),
        "lookalike.outputs": f"{DISTANCES}: float32 (batch, {k}) nearest first; {INDICES}: int64 (batch, {k}) into lookalike.labels (and lookalike.paths)",
    }
    del graph_model.metadata_props[:]
    for key, value in metadata.items():
        graph_model.metadata_props.add(key=key, value=value)
    graph_model.doc_string = "lookalike image similarity search: pixels -> top-k reference indices and distances"
    onnx.checker.check_model(graph_model)
    path = Path(path)
    write_bytes_atomic(path, graph_model.SerializeToString())
    return path
