"""The exported ONNX search graph, run in ONNX Runtime, answers as ``model.query`` does on real photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest

import lookalike as lk
from lookalike.embed.extractor import Embedder
from lookalike.embed.registry import DEFAULT_DESCRIPTOR, DEFAULT_MODEL, DESCRIPTORS, Descriptor, get_spec

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "clothing"
ALL = sorted(str(p) for p in SAMPLES.rglob("*.jpg"))
REFERENCES, QUERIES = ALL[::2], ALL[1::2][:12]  # queries are photos the model has not indexed


def _run(path: Path, photos: list[str], spec) -> tuple[np.ndarray, np.ndarray]:
    embedder = Embedder(spec)
    batch = np.stack([embedder.load(p) for p in photos])
    return ort.InferenceSession(str(path)).run(["distances", "indices"], {"pixels": batch})


def _check_answers(model, path: Path, queries: list[str], k: int) -> None:
    distances, indices = _run(path, queries, model.core.embedder.spec)
    expected = model.query(queries, k=k, verbose=False)
    assert indices.shape == distances.shape == (len(queries), k) and indices.dtype == np.int64
    np.testing.assert_array_equal(model.labels[indices.ravel()], expected["reference_label"].to_numpy())
    np.testing.assert_allclose(distances.ravel(), expected["distance"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("descriptor", [None, "plain"])  # None: the default, gem
@pytest.mark.parametrize("metric", ["euclidean", "cosine", "dot"])
def test_exported_graph_equals_query_on_real_photos(tmp_path, metric, descriptor):
    model = lk.create(REFERENCES, metric=metric, descriptor=descriptor, verbose=False)
    assert model.core.embedder.spec.descriptor == Descriptor.resolve(descriptor or DEFAULT_DESCRIPTOR)
    _check_answers(model, model.export_onnx(tmp_path / "search.onnx", k=5), QUERIES, k=5)


def test_mirror_image_and_two_scales_are_exported_as_embedded(tmp_path):
    """GeM over the photo and its mirror image at 224 and 320 px, averaged, unit length: all in the exported graph."""
    descriptor = {"pooling": "gem", "flip": True, "scales": [1.0, 1.43], "normalize": True}
    model = lk.create(REFERENCES[:16], metric="cosine", descriptor=descriptor, verbose=False)
    path = model.export_onnx(tmp_path / "search.onnx", k=4)
    _check_answers(model, path, QUERIES[:6], k=4)
    exported = onnx.load(str(path))
    [pixels] = exported.graph.input
    assert [d.dim_value for d in pixels.type.tensor_type.shape.dim[1:]] == [320, 320, 3]  # the largest scale
    meta = {p.key: p.value for p in exported.metadata_props}
    assert json.loads(meta["lookalike.descriptor"]) == model.core.embedder.spec.descriptor.to_dict()


def test_a_reference_finds_itself_first(tmp_path):
    model = lk.create(REFERENCES[:20], verbose=False)
    distances, indices = _run(model.export_onnx(tmp_path / "s.onnx", k=3), REFERENCES[:20], model.core.embedder.spec)
    assert indices[:, 0].tolist() == list(range(20))
    assert np.all(distances[:, 0] < 1e-2 * distances[:, 1])


def test_metadata_documents_labels_preprocessing_and_outputs(tmp_path):
    refs = pd.DataFrame({"image": REFERENCES[:10], "name": [Path(p).stem for p in REFERENCES[:10]]})
    model = lk.create(refs, label="name", feature="image", verbose=False)
    path = model.export_onnx(tmp_path / "search.onnx", k=50)
    exported = onnx.load(str(path))
    meta = {p.key: p.value for p in exported.metadata_props}
    assert json.loads(meta["lookalike.labels"]) == model.labels.tolist() == refs["name"].tolist()
    assert meta["lookalike.metric"] == "euclidean" and meta["lookalike.model"] == DEFAULT_MODEL
    assert meta["lookalike.k"] == "10"  # k is capped at the number of references
    prep = json.loads(meta["lookalike.preprocessing"])
    expected = get_spec(DEFAULT_MODEL).preprocessing.to_dict()
    assert prep["size"] == [224, 224] and prep["channel_order"] == expected["channel_order"] == "RGB"
    assert prep["mean"] == list(expected["mean"]) and "uint8" in prep["input"]
    [pixels] = exported.graph.input
    assert pixels.name == "pixels" and pixels.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [o.name for o in exported.graph.output] == ["distances", "indices"]
    assert "TopK" in {n.op_type for n in exported.graph.node}
    assert json.loads(meta["lookalike.descriptor"]) == DESCRIPTORS[DEFAULT_DESCRIPTOR].to_dict()
    assert meta["lookalike.precision"] == "int8"
    # Only what the search needs: GeM pooling of the head, not the classifier nor the network's average pool.
    weights = {init.name for init in exported.graph.initializer}
    assert any(name.startswith("head/W") for name in weights) and not any(name.startswith("fc/") for name in weights)
    assert {"Pow", "LpNormalization", "QuantizeLinear"} <= {n.op_type for n in exported.graph.node}
    assert "head/gap" not in {name for n in exported.graph.node for name in n.output}


def test_whitening_and_projections_are_refused(tmp_path):
    """Whitening (fast, best) and learned projections are fitted outside the network's graph."""
    for name in ("fast", "best"):
        whitened = lk.create(REFERENCES[:4], descriptor=name, verbose=False)
        with pytest.raises(ValueError, match='no whitening.*descriptor="gem"'):
            whitened.export_onnx(tmp_path / "w.onnx")
    projected = lk.create(REFERENCES[4:8], projection=whitened.projection, verbose=False)
    with pytest.raises(ValueError, match="no learned projection.*projection whiten"):
        projected.export_onnx(tmp_path / "p.onnx")
    assert not any(tmp_path.iterdir())


def test_bad_k_and_precomputed_models_are_refused(tmp_path):
    model = lk.create(REFERENCES[:4], verbose=False)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be"):
            model.export_onnx(tmp_path / "x.onnx", k=bad)
    vectors = lk.create(np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32), model=None, verbose=False)
    with pytest.raises(ValueError, match="precomputed"):
        vectors.export_onnx(tmp_path / "y.onnx")
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "y.onnx").exists()
