"""Core ML export: the saved .mlpackage is checked on Linux, where Core ML itself cannot run.

Core ML predictions need macOS/iOS. So the tests read the *saved* package
back (coremltools' MIL-proto loader), translate its ops one by one into an
ONNX graph, run that with ONNX Runtime on real photos and compare with
``model.query``. The translation maps each MIL op to the ONNX op of the same
definition using only what the file says (explicit pads, strides, axes,
constants), so weights, wiring, preprocessing and the search are all checked;
what it cannot check is Apple's own kernels.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import lookalike as lk
from lookalike.embed.extractor import Embedder

ct = pytest.importorskip("coremltools", reason="needs the coreml extra: pip install 'lookalike[coreml]'")

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "clothing"
ALL = sorted(str(p) for p in SAMPLES.rglob("*.jpg"))
REFERENCES, QUERIES = ALL[::2], ALL[1::2][:12]  # queries are photos the model has not indexed


def _saved_program(path: Path):
    """The main function of the MIL program stored in ``path`` (.mlpackage), as coremltools loads it."""
    from coremltools.converters.mil.frontend.milproto.load import load

    spec = ct.utils.load_spec(str(path))
    program = load(spec, spec.specificationVersion, str(path / "Data" / "com.apple.CoreML" / "weights"))
    return spec, program.functions["main"]


def _onnx_type(var) -> int:
    from coremltools.converters.mil.mil.types import nptype_from_builtin

    return helper.np_dtype_to_tensor_dtype(np.dtype(nptype_from_builtin(var.dtype)))


def _as_onnx(function) -> onnx.ModelProto:
    """An ONNX graph computing the same ops as the MIL ``function`` (only the op kinds the exporter emits)."""
    nodes, inits, seen = [], [], set()

    def tensor(var) -> str:  # a var used as tensor data: consts become initializers
        if var.op is not None and var.op.op_type == "const" and var.name not in seen:
            seen.add(var.name)
            inits.append(numpy_helper.from_array(np.asarray(var.val), var.name))
        return var.name

    simple = {"relu": "Relu", "sqrt": "Sqrt", "identity": "Identity", "add": "Add", "sub": "Sub"}
    simple |= {"mul": "Mul", "real_div": "Div", "maximum": "Max", "matmul": "MatMul", "pow": "Pow"}
    for op in function.operations:
        kind, args, out = op.op_type, op.inputs, [v.name for v in op.outputs]
        value = {
            name: var.val for name, var in args.items() if not isinstance(var, (list, tuple)) and var.val is not None
        }
        if kind == "const":
            continue
        if kind in simple:
            assert not value.get("transpose_x") and not value.get("transpose_y")
            names = [tensor(args[n]) for n in ("x", "y") if n in args]
            nodes.append(helper.make_node(simple[kind], names, out))
        elif kind == "conv":
            assert value["pad_type"] == "custom" and list(value["dilations"]) == [1, 1] and value["groups"] == 1
            pad = [int(p) for p in value["pad"]]  # MIL: (before, after) per axis; ONNX: all befores, then afters
            names = [tensor(args["x"]), tensor(args["weight"]), tensor(args["bias"])]
            nodes.append(
                helper.make_node("Conv", names, out, strides=list(value["strides"]), pads=pad[0::2] + pad[1::2])
            )
        elif kind == "max_pool":
            assert value["pad_type"] == "valid" and not value["ceil_mode"]
            kernel, strides = list(value["kernel_sizes"]), list(value["strides"])
            nodes.append(helper.make_node("MaxPool", [tensor(args["x"])], out, kernel_shape=kernel, strides=strides))
        elif kind == "concat":
            assert not value["interleave"]
            nodes.append(helper.make_node("Concat", [tensor(v) for v in args["values"]], out, axis=int(value["axis"])))
        elif kind in ("reduce_mean", "reduce_sum"):
            axes = numpy_helper.from_array(np.asarray(value["axes"], np.int64), f"{op.name}/axes")
            inits.append(axes)
            onnx_op = "ReduceMean" if kind == "reduce_mean" else "ReduceSum"
            nodes.append(
                helper.make_node(onnx_op, [tensor(args["x"]), axes.name], out, keepdims=int(value["keep_dims"]))
            )
        elif kind == "topk":
            k = numpy_helper.from_array(np.array([value["k"]], np.int64), f"{op.name}/k")
            inits.append(k)
            largest = int(not value["ascending"])
            int64 = out[1] + "/int64"  # ONNX TopK gives int64 indices, MIL's are int32
            nodes.append(
                helper.make_node(
                    "TopK", [tensor(args["x"]), k.name], [out[0], int64], axis=int(value["axis"]), largest=largest
                )
            )
            nodes.append(helper.make_node("Cast", [int64], [out[1]], to=TensorProto.INT32))
        else:
            raise AssertionError(f"the exporter emitted a MIL op this check does not know: {kind}")
    [image] = function.inputs.values()
    graph = helper.make_graph(
        nodes,
        "saved_coreml_program",
        [helper.make_tensor_value_info(image.name, TensorProto.FLOAT, list(image.shape))],
        [helper.make_tensor_value_info(v.name, _onnx_type(v), None) for v in function.outputs],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run_saved(path: Path, photos: list[str], spec) -> dict[str, np.ndarray]:
    """Run the saved program on ``photos`` as Core ML would feed them: 224x224 BGR pixel values 0..255."""
    _, function = _saved_program(path)
    session = ort.InferenceSession(_as_onnx(function).SerializeToString())
    embedder = Embedder(spec)
    results = []
    for photo in photos:
        pixels = embedder.load(photo)  # uint8 (224, 224, 3) RGB, squashed to size
        bgr = pixels[None, :, :, ::-1].transpose(0, 3, 1, 2).astype(np.float32)
        results.append(dict(zip(["embedding", "distances", "indices"], session.run(None, {"image": bgr}), strict=True)))
    return {key: np.concatenate([r[key] for r in results]) for key in results[0]}


@pytest.fixture(scope="module")
def references_model():
    """The default model: the gem descriptor (GeM pooling, unit length), euclidean."""
    return lk.create(REFERENCES, verbose=False)


@pytest.fixture(scope="module")
def package(references_model, tmp_path_factory):
    """The euclidean model exported once, asking for more neighbours than there are references."""
    return references_model.export_coreml(tmp_path_factory.mktemp("coreml") / "Search.mlpackage", k=50)


def _check_answers(model, path: Path, k: int) -> None:
    out = _run_saved(path, QUERIES, model._get_embedder().spec)
    expected = model.query(QUERIES, k=k, verbose=False)
    assert out["indices"].shape == out["distances"].shape == (len(QUERIES), k) and out["indices"].dtype == np.int32
    np.testing.assert_array_equal(model.labels[out["indices"].ravel()], expected["reference_label"].to_numpy())
    np.testing.assert_allclose(out["distances"].ravel(), expected["distance"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["embedding"], model.extract_features(QUERIES, verbose=False), rtol=1e-4, atol=1e-4)


def test_saved_program_answers_as_query_on_real_photos(references_model, package):
    _check_answers(references_model, package, k=len(REFERENCES))


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_other_metrics_answer_as_query(tmp_path, metric):
    model = lk.create(REFERENCES, metric=metric, verbose=False)
    _check_answers(model, model.export_coreml(tmp_path / "Search.mlpackage", k=5), k=5)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_plain_descriptor_answers_as_query(tmp_path, metric):
    """Average pooling, no unit length: Turi's embedding, still exportable."""
    model = lk.create(REFERENCES, metric=metric, descriptor="plain", verbose=False)
    path = model.export_coreml(tmp_path / "Search.mlpackage", k=5)
    _check_answers(model, path, k=5)
    _, function = _saved_program(path)
    assert "pow" not in {op.op_type for op in function.operations}


def test_gem_pooling_is_in_the_program(references_model, package):
    """Clamp at 1e-6, cube, spatial mean, cube root, unit length: the descriptor the references were embedded with."""
    _, function = _saved_program(package)
    ops = [op for op in function.operations if op.op_type != "const"]
    pows = [op for op in ops if op.op_type == "pow"]
    assert [float(op.inputs["y"].val) for op in pows] == pytest.approx([3.0, 1.0 / 3.0])
    clamp = next(op for op in ops if op.op_type == "maximum")
    assert clamp.inputs["x"].op.op_type == "concat" and float(clamp.inputs["y"].val) == pytest.approx(1e-6)
    meta = dict(ct.utils.load_spec(str(package)).description.metadata.userDefined)
    assert json.loads(meta["lookalike.descriptor"]) == references_model._get_embedder().spec.descriptor.to_dict()
    embedding = _run_saved(package, QUERIES[:3], references_model._get_embedder().spec)["embedding"]
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, rtol=1e-5)


def test_spec_takes_a_bgr_image_and_documents_labels(references_model, package):
    spec, function = _saved_program(package)
    [image] = spec.description.input
    assert image.name == "image" and image.type.WhichOneof("Type") == "imageType"
    assert (image.type.imageType.width, image.type.imageType.height) == (224, 224)
    assert image.type.imageType.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.BGR
    shapes = {o.name: list(o.type.multiArrayType.shape) for o in spec.description.output}
    assert shapes == {"embedding": [1, 512], "distances": [1, 40], "indices": [1, 40]}  # k capped at 40 references
    meta = dict(spec.description.metadata.userDefined)
    assert json.loads(meta["lookalike.labels"]) == references_model.labels.tolist()
    assert meta["lookalike.metric"] == "euclidean" and meta["lookalike.k"] == "40"
    # The caffe means are the program's first op, on the image, in BGR order.
    first = next(op for op in function.operations if op.op_type != "const")
    assert first.op_type == "add" and first.inputs["x"].name == "image"
    np.testing.assert_allclose(first.inputs["y"].val.ravel(), [-103.939, -116.779, -123.68], rtol=1e-6)


def test_weights_equal_the_onnx_network(package):
    from lookalike.embed import squeezenet

    _, function = _saved_program(package)
    convs = {op.name: op for op in function.operations if op.op_type == "conv"}
    network = onnx.load_from_string(squeezenet.build_onnx())
    weights = {i.name: numpy_helper.to_array(i) for i in network.graph.initializer}
    onnx_convs = [n.input[1].removesuffix("/W") for n in network.graph.node if n.op_type == "Conv"]
    assert len(convs) == len(onnx_convs) - 1 == 25  # all but the classifier (conv10)
    for layer in onnx_convs[:-1]:
        op = convs[layer.replace("/", "_") + "_conv"]
        np.testing.assert_array_equal(op.inputs["weight"].val, weights[f"{layer}/W"])
        np.testing.assert_array_equal(op.inputs["bias"].val, weights[f"{layer}/B"])


def test_an_existing_package_is_replaced(tmp_path, references_model, package):
    target = tmp_path / "Search.mlpackage"
    shutil.copytree(package, target)
    references_model.export_coreml(target, k=3)
    spec, _ = _saved_program(target)
    assert dict(spec.description.metadata.userDefined)["lookalike.k"] == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Search.mlpackage"]  # no staging folder left


def test_clear_errors(tmp_path, references_model):
    with pytest.raises(ValueError, match=r"\.mlpackage"):
        references_model.export_coreml(tmp_path / "search.mlmodel")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        references_model.export_coreml(tmp_path / "s.mlpackage", k=0)
    flipped = lk.create(REFERENCES[:4], descriptor="best", verbose=False)
    with pytest.raises(ValueError, match="no mirror image.*descriptor='gem'.*export_onnx"):
        flipped.export_coreml(tmp_path / "s.mlpackage")
    projected = lk.create(REFERENCES[4:8], projection=flipped.projection, verbose=False)  # gem + a whitening
    with pytest.raises(ValueError, match="learned projection.*projection whiten"):
        projected.export_coreml(tmp_path / "s.mlpackage")
    precomputed = lk.create(np.eye(3, dtype=np.float32), model=None, verbose=False)
    with pytest.raises(ValueError, match="precomputed embeddings"):
        precomputed.export_coreml(tmp_path / "s.mlpackage")
    assert not any(tmp_path.iterdir())


def test_cli_writes_both_exports(tmp_path, capsys):
    from lookalike.cli import main

    lk.create(REFERENCES[:6], verbose=False).save(tmp_path / "m.lookalike")
    onnx_file, package = tmp_path / "s.onnx", tmp_path / "S.mlpackage"
    assert main(["export", str(tmp_path / "m.lookalike"), "--onnx", str(onnx_file), "--coreml", str(package)]) == 0
    assert capsys.readouterr().out.split() == ["wrote", str(onnx_file), "wrote", str(package)]
    assert [o.name for o in onnx.load(str(onnx_file)).graph.output] == ["distances", "indices"]
    assert dict(_saved_program(package)[0].description.metadata.userDefined)["lookalike.k"] == "5"
    assert main(["export", str(tmp_path / "m.lookalike")]) == 1
    assert "--onnx FILE.onnx and/or --coreml" in capsys.readouterr().err
