"""Put a model's pixel normalisation inside its ONNX graph.

The wrapped graph takes ``pixels``: uint8, (batch, height, width, 3), RGB, the
layout Pillow and numpy give for free, and does the cast, channel order,
scale, mean and std itself, then feeds the network's own input. That moves
per-pixel float arithmetic off the decoding threads into ONNX Runtime's fused
kernels, shrinks the queue of decoded images fourfold, and makes an exported
model usable from any app that has raw RGB bytes.
"""

from __future__ import annotations

import numpy as np

from lookalike.embed.registry import Preprocessing

PIXELS = "pixels"


def with_pixel_input(model, input_name: str, preprocessing: Preprocessing):
    """Return a copy of ``model`` (onnx.ModelProto) whose input is uint8 NHWC RGB ``pixels``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(model)
    graph = wrapped.graph
    original = next((i for i in graph.input if i.name == input_name), None)
    if original is None:
        raise ValueError(f"the ONNX model has no input named {input_name!r}")
    width, height = preprocessing.size
    # value = (pixel * scale - mean) / std  ==  pixel * gain + offset, per channel in network order.
    gain = np.float32(preprocessing.scale) / np.asarray(preprocessing.std, np.float32)
    offset = -np.asarray(preprocessing.mean, np.float32) / np.asarray(preprocessing.std, np.float32)
    nodes = [helper.make_node("Cast", [PIXELS], ["pixels/float"], to=TensorProto.FLOAT)]
    current = "pixels/float"
    if preprocessing.channel_order == "BGR":
        nodes.append(helper.make_node("Gather", [current, "pixels/bgr_order"], ["pixels/bgr"], axis=3))
        current = "pixels/bgr"
    nodes += [
        helper.make_node("Mul", [current, "pixels/gain"], ["pixels/scaled"]),
        helper.make_node("Add", ["pixels/scaled", "pixels/offset"], ["pixels/normalized"]),
        helper.make_node("Transpose", ["pixels/normalized"], [input_name], perm=[0, 3, 1, 2]),
    ]
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([2, 1, 0], np.int64), "pixels/bgr_order"),
            numpy_helper.from_array(gain.astype(np.float32), "pixels/gain"),
            numpy_helper.from_array(offset.astype(np.float32), "pixels/offset"),
        ]
    )
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    graph.input.remove(original)
    graph.input.insert(0, helper.make_tensor_value_info(PIXELS, TensorProto.UINT8, ["batch", height, width, 3]))
    return wrapped
