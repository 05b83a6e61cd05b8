"""Int8 networks: ONNX Runtime static quantization from activation ranges shipped with lookalike.

A registered network that offers int8 ships the activation ranges its
calibration measured (``embed/calibration/<name>.json``, written once by
``scripts/calibrate_int8.py`` on CC0 photos). Every machine quantizes the
same float32 graph with the same ranges, so every machine builds the same
int8 graph: no calibration photos are needed at run time.

The settings, measured (docs/models.md):

- QDQ format, weights int8 per channel, activations uint8 (MinMax ranges);
- ``Clip`` (ReLU6) is quantized with the convolutions, so each activation
  range is the one after the ReLU6 and ONNX Runtime fuses Conv + Clip.
  Quantizing only ``Conv`` gave ranges before the ReLU6 and lost 0.3 N-S;
- ``reduce_range``: weights use 7 bits. Without VNNI, ONNX Runtime's
  uint8 x int8 kernels add pairs of products in 16 bits, which saturate
  with 8-bit weights: on an emulated AVX2 CPU the embeddings of the same
  photos then had cosine 0.64-1.0 to those of an AVX-512 VNNI CPU. With 7-bit
  weights both agree to within rounding, at the same retrieval quality.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

#: Bump when the quantization settings change, so cached int8 files and embeddings are not reused.
QUANTIZE_VERSION = 3
CALIBRATION_DIR = Path(__file__).with_name("calibration")
QUANTIZED_OPS = ["Conv", "Add", "Clip"]


def calibration_file(name: str) -> Path:
    """The shipped activation ranges of the registered network ``name``."""
    return CALIBRATION_DIR / f"{name}.json"


def calibration_digest(name: str) -> str:
    """A short hash of the shipped ranges: part of the int8 network's fingerprint."""
    return hashlib.sha256(calibration_file(name).read_bytes()).hexdigest()[:12]


def _settings():
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    return {
        "quant_format": QuantFormat.QDQ,
        "op_types_to_quantize": QUANTIZED_OPS,
        "per_channel": True,
        "reduce_range": True,
        "activation_type": QuantType.QUInt8,
        "weight_type": QuantType.QInt8,
        "calibrate_method": CalibrationMethod.MinMax,
    }


@contextlib.contextmanager
def _quiet_quantizer():
    """ONNX Runtime's quantizer advises "pre-processing" through the root logger: our graph needs none."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def quantize_int8(network: bytes, ranges: Path, feature_map: str = "") -> bytes:
    """The int8 (QDQ) version of the float32 ``network`` (serialized ONNX), using the activation ``ranges`` file.

    ``feature_map``, the tensor descriptors pool, keeps its name but becomes the dequantized activations.
    """
    from onnxruntime.quantization import quantize_static

    if not ranges.is_file():
        raise FileNotFoundError(f"no calibration file {ranges}: this lookalike installation is incomplete")
    with tempfile.TemporaryDirectory(prefix="lookalike-int8-") as tmp:
        source, target = Path(tmp) / "float32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(network)
        # With an existing calibration cache, ONNX Runtime reads its ranges and runs no calibration.
        with _quiet_quantizer():
            quantize_static(source, target, None, calibration_cache_path=ranges, **_settings())
        import onnx

        model = onnx.load(str(target))
        # The quantizer records the shapes it inferred at the calibration size; descriptors run the network
        # at other sizes too (scales), where those would contradict the real shapes.
        del model.graph.value_info[:]
        if feature_map:
            _name_dequantized(model.graph, feature_map)
        return model.SerializeToString()


def _name_dequantized(graph, tensor: str) -> None:
    """Give ``tensor``'s name to its dequantized copy (the output of its QuantizeLinear -> DequantizeLinear pair).

    The quantizer drops the ReLU6 after a convolution (the uint8 range clamps instead), so the tensor
    of that name is the convolution's raw output: a descriptor pooling it would see values the ReLU6
    removes, and its second consumer would stop ONNX Runtime from fusing the convolution into int8.
    """
    quantize = next((n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor), None)
    dequantize = quantize and next(
        (n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] == quantize.output[0]), None
    )
    if dequantize is None:
        raise ValueError(f"the int8 network does not quantize its feature map {tensor!r}")
    raw, old = f"{tensor}/raw", dequantize.output[0]
    for node in graph.node:
        node.output[:] = [raw if name == tensor else name for name in node.output]
        node.input[:] = [raw if name == tensor else tensor if name == old else name for name in node.input]
    dequantize.output[:] = [tensor]


def calibrate(network: bytes, inputs: Iterable[dict[str, np.ndarray]], ranges: Path) -> None:
    """Measure the activation ranges of ``network`` on ``inputs`` (feeds of its own inputs) and write ``ranges``."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    feeds = iter(inputs)

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(feeds, None)

    ranges.unlink(missing_ok=True)  # an existing file would be read instead of measured
    with tempfile.TemporaryDirectory(prefix="lookalike-calibrate-") as tmp:
        source = Path(tmp) / "float32.onnx"
        source.write_bytes(network)
        with _quiet_quantizer():
            quantize_static(source, Path(tmp) / "int8.onnx", Reader(), calibration_cache_path=ranges, **_settings())
