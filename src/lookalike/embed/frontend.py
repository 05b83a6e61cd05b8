"""Put a model's pixel normalisation inside its ONNX graph.

The wrapped graph takes ``pixels``: uint8, (batch, height, width, 3), RGB, the
layout Pillow and numpy give for free, and does the cast, channel order,
scale, mean and std itself, then feeds the network's own input. That moves
per-pixel float arithmetic off the decoding threads into ONNX Runtime's fused
kernels, shrinks the queue of decoded images fourfold, and makes an exported
model usable from any app that has raw RGB bytes.

A non-plain :class:`~lookalike.embed.registry.Descriptor` is built into the
same graph: each branch (input scale x mirror image) runs a copy of the
network's nodes (sharing its weights) up to the last feature map, pools it
(average or GeM), and the unit-length branch vectors are averaged. The graph's
output keeps the network's output name, so callers do not change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from lookalike.embed.model_files import cached_build
from lookalike.embed.registry import Descriptor, ModelSpec, Preprocessing
from lookalike.store.files import file_sha256

PIXELS = "pixels"
#: GeM clamps the feature map to at least this before the power, as Radenovic et al. do: a fractional
#: power of a negative value is NaN. The Core ML export (lookalike.export.coreml) uses the same value.
GEM_EPS = 1e-6
#: Changes whenever :func:`with_pixel_input` builds another graph from the same network and settings.
FRONTEND_VERSION = 1


def embedding_graph(spec: ModelSpec):
    """The spec's network, in its precision, with the pixel front end and its descriptor (onnx.ModelProto).

    What the extractor runs and what the ONNX export starts from, so both give the same vectors.
    """
    import onnx

    network = onnx.load(str(spec.network_file()))
    return with_pixel_input(
        network, spec.input_name, spec.preprocessing, spec.descriptor, spec.feature_map, spec.output_name
    )


def embedding_graph_file(spec: ModelSpec) -> Path:
    """:func:`embedding_graph` serialised in the cache's ``models/`` folder, built once per network and settings.

    A process that embeds then neither imports ``onnx`` nor builds the graph: those took 0.85 s of every command
    that embeds, where ONNX Runtime opens the file in 0.05 s.
    """
    network = spec.network_file()
    key = {
        "network": file_sha256(network),
        "input": spec.input_name,
        "preprocessing": spec.preprocessing.to_dict(),
        "descriptor": spec.descriptor.to_dict(),
        "feature_map": spec.feature_map,
        "output": spec.output_name,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cached_build(f"pixels-{digest}", FRONTEND_VERSION, lambda: embedding_graph(spec).SerializeToString())


def with_pixel_input(
    model,
    input_name: str,
    preprocessing: Preprocessing,
    descriptor: Descriptor | None = None,
    feature_map: str = "",
    output_name: str = "embedding",
):
    """Return a copy of ``model`` (onnx.ModelProto) whose input is uint8 NHWC RGB ``pixels``.

    With a ``descriptor`` that is not plain, ``output_name`` becomes that
    descriptor (pooled from the tensor ``feature_map`` when it pools), and the
    pixels are taken at the largest of its scales.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(model)
    graph = wrapped.graph
    original = next((i for i in graph.input if i.name == input_name), None)
    if original is None:
        raise ValueError(f"the ONNX model has no input named {input_name!r}")
    descriptor = descriptor or Descriptor()
    top = max(descriptor.scales)
    width, height = round(preprocessing.size[0] * top), round(preprocessing.size[1] * top)
    # value = (pixel * scale - mean) / std  ==  pixel * gain + offset, per channel in network order.
    gain = np.float32(preprocessing.scale) / np.asarray(preprocessing.std, np.float32)
    offset = -np.asarray(preprocessing.mean, np.float32) / np.asarray(preprocessing.std, np.float32)
    nodes = [helper.make_node("Cast", [PIXELS], ["pixels/float"], to=TensorProto.FLOAT)]
    current = "pixels/float"
    constants = [
        numpy_helper.from_array(gain.astype(np.float32), "pixels/gain"),
        numpy_helper.from_array(offset.astype(np.float32), "pixels/offset"),
    ]
    if preprocessing.channel_order == "BGR":
        nodes.append(helper.make_node("Gather", [current, "pixels/bgr_order"], ["pixels/bgr"], axis=3))
        constants.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), "pixels/bgr_order"))
        current = "pixels/bgr"
    nodes += [
        helper.make_node("Mul", [current, "pixels/gain"], ["pixels/scaled"]),
        helper.make_node("Add", ["pixels/scaled", "pixels/offset"], ["pixels/normalized"]),
        helper.make_node("Transpose", ["pixels/normalized"], [input_name], perm=[0, 3, 1, 2]),
    ]
    graph.initializer.extend(constants)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    graph.input.remove(original)
    graph.input.insert(0, helper.make_tensor_value_info(PIXELS, TensorProto.UINT8, ["batch", height, width, 3]))
    if descriptor.in_graph is not None:
        _add_descriptor(wrapped, input_name, descriptor, feature_map, output_name)
    return wrapped


def _ancestors(graph, target: str, stop: str) -> list:
    """The nodes between tensor ``stop`` and tensor ``target`` (that ``target`` depends on), in graph order."""
    producer = {out: node for node in graph.node for out in node.output}
    needed, stack = set(), [target]
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if name != stop and node is not None and id(node) not in needed:
            needed.add(id(node))
            stack.extend(node.input)
    return [node for node in graph.node if id(node) in needed]


def _copy_nodes(nodes: list, prefix: str, renamed: dict[str, str], keep: set[str]) -> list:
    """Copies of ``nodes`` whose tensors are prefixed (except ``keep``, the weights); ``renamed`` is updated."""
    from onnx import helper

    copies = []
    for node in nodes:
        copy = helper.make_node(
            node.op_type,
            [name if not name or name in keep else renamed.get(name, prefix + name) for name in node.input],
            [prefix + name for name in node.output],
            name=prefix + node.name if node.name else None,
            domain=node.domain or None,
        )
        copy.attribute.extend(node.attribute)
        copies.append(copy)
        renamed.update({name: prefix + name for name in node.output})
    return copies


def _pool(descriptor: Descriptor, feature_map: str, prefix: str) -> tuple[list, str]:
    """Nodes pooling an NCHW feature map into (batch, channels): average or GeM."""
    from onnx import helper

    if descriptor.pooling == "avg":
        nodes = [helper.make_node("GlobalAveragePool", [feature_map], [prefix + "pooled"])]
    else:
        nodes = [
            helper.make_node("Clip", [feature_map, "descriptor/eps"], [prefix + "clipped"]),
            helper.make_node("Pow", [prefix + "clipped", "descriptor/p"], [prefix + "powered"]),
            helper.make_node("GlobalAveragePool", [prefix + "powered"], [prefix + "mean"]),
            helper.make_node("Pow", [prefix + "mean", "descriptor/inv_p"], [prefix + "pooled"]),
        ]
    nodes.append(helper.make_node("Flatten", [prefix + "pooled"], [prefix + "vector"], axis=1))
    return nodes, prefix + "vector"


def _add_descriptor(model, input_name: str, descriptor: Descriptor, feature_map: str, output_name: str) -> None:
    """Make ``output_name`` the descriptor: branches over scales and mirroring, pooled and averaged."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    network_output = "network/" + output_name  # the network's own output, moved out of the way
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == output_name:
                node.output[i] = network_output
    for value in [v for v in graph.output if v.name == output_name]:
        graph.output.remove(value)
    pools = descriptor.pooling != "avg" or descriptor.scales != (1.0,)
    source = feature_map if pools else network_output
    trunk = _ancestors(graph, source, stop=input_name)
    weights = {init.name for init in graph.initializer}
    top = max(descriptor.scales)
    constants: dict[str, np.ndarray] = {}  # only those used: ONNX Runtime warns about the others
    if descriptor.pooling == "gem":
        constants["descriptor/eps"] = np.array(GEM_EPS, np.float32)
        constants["descriptor/p"] = np.array(descriptor.gem_p, np.float32)
        constants["descriptor/inv_p"] = np.array(1.0 / descriptor.gem_p, np.float32)
    if descriptor.flip:
        # Slice(start=-1, end=-inf, axis=3, step=-1): the NCHW image read right to left, its mirror image.
        constants.update({f"descriptor/flip{i}": np.array([v], np.int64) for i, v in enumerate((-1, -(2**62), 3, -1))})
    nodes: list = []
    branches: list[str] = []
    for scale in descriptor.scales:
        for mirrored in (False, True) if descriptor.flip else (False,):
            prefix = f"descriptor/x{scale:g}{'-mirrored' if mirrored else ''}/"
            vector = source
            if scale != top or mirrored:  # the unmirrored top scale is the network itself
                image = input_name
                if scale != top:
                    constants[prefix + "scales"] = np.array([1.0, 1.0, scale / top, scale / top], np.float32)
                    nodes.append(
                        helper.make_node(
                            "Resize", [image, "", prefix + "scales"], [prefix + "resized"], mode="linear", antialias=1
                        )
                    )
                    image = prefix + "resized"
                if mirrored:
                    parts = [f"descriptor/flip{i}" for i in range(4)]
                    nodes.append(helper.make_node("Slice", [image, *parts], [prefix + "mirrored"]))
                    image = prefix + "mirrored"
                renamed = {input_name: image}
                nodes += _copy_nodes(trunk, prefix, renamed, weights)
                vector = renamed[source]
            if pools:
                pooling, vector = _pool(descriptor, vector, prefix)
                nodes += pooling
            if len(descriptor.scales) > 1 or descriptor.flip:
                # Unit length before averaging, so that no branch outweighs the others.
                nodes.append(helper.make_node("LpNormalization", [vector], [prefix + "unit"], axis=1, p=2))
                vector = prefix + "unit"
            branches.append(vector)
    if len(branches) > 1:
        constants["descriptor/share"] = np.array(1.0 / len(branches), np.float32)
        nodes += [
            helper.make_node("Sum", branches, ["descriptor/sum"]),
            helper.make_node("Mul", ["descriptor/sum", "descriptor/share"], ["descriptor/mean"]),
        ]
        branches = ["descriptor/mean"]
    final = branches[0]
    if descriptor.normalize:
        nodes.append(helper.make_node("LpNormalization", [final], ["descriptor/normalized"], axis=1, p=2))
        final = "descriptor/normalized"
    nodes.append(helper.make_node("Identity", [final], [output_name]))
    graph.node.extend(nodes)
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in constants.items())
    graph.output.insert(0, helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", None]))
    if len(descriptor.scales) > 1:
        for opset in model.opset_import:
            if opset.domain in ("", "ai.onnx") and opset.version < 18:
                opset.version = 18  # Resize's antialias; the network's own ops are the same in 17 and 18
