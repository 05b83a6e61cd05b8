"""The built-in SqueezeNet v1.1: right on ImageNet, useful for near-duplicates, safe to build, self-healing cache."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import lookalike as lk
from conftest import CLASSES
from lookalike.config import cache_dir
from lookalike.embed import squeezenet
from lookalike.embed.extractor import Embedder
from lookalike.embed.registry import get_spec
from lookalike.embed.weights import NumpyUnpickler

NEARDUP_GROUPS = 40
NEARDUP_MEMBERS = ("original.jpg", "crop.jpg", "rotate.jpg", "overlay.jpg")


def pairwise_euclidean(vectors: np.ndarray) -> np.ndarray:
    v = vectors.astype(np.float64)
    return np.linalg.norm(v[:, None, :] - v[None, :, :], axis=-1)


def intra_inter(distances: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    same = groups[:, None] == groups[None, :]
    off_diagonal = ~np.eye(len(groups), dtype=bool)
    return float(distances[same & off_diagonal].mean()), float(distances[~same].mean())


# ------------------------------------------------------------------------------ real photos


def test_shared_data_gate_skips_locally_and_fails_in_ci(monkeypatch, tmp_path):
    import conftest

    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path / "absent")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"needs \.\./shared/data"):
        conftest.require_shared()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        conftest.require_shared()
    for name in ("imagenet-sample", "neardup"):
        (tmp_path / "absent" / name).mkdir(parents=True)
    assert conftest.require_shared() == tmp_path / "absent"


@pytest.mark.needs_shared
def test_imagenet_top5_accuracy(needs_shared):
    """The converted network classifies ImageNet photos as SqueezeNet 1.1 should (published top-5 ~0.80)."""
    files = sorted((needs_shared / "imagenet-sample").glob("*.JPEG"))
    assert len(files) == 250
    truth = np.array([int(f.name.split("_")[0]) for f in files])
    spec = get_spec("squeezenet_v1.1")
    embedder = Embedder(spec)  # its own decoding, preprocessing and in-graph normalisation
    assert [o.name for o in embedder.session.get_outputs()] == ["embedding", "logits"]
    logits = []
    for start in range(0, len(files), 50):
        batch = np.stack([embedder.load(f) for f in files[start : start + 50]])
        assert batch.shape[1:] == (224, 224, 3) and batch.dtype == np.uint8
        logits.append(embedder.run(batch, output="logits"))
    logits = np.concatenate(logits)
    assert logits.shape == (250, 1000)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    top1_accuracy = float((top5[:, 0] == truth).mean())
    top5_accuracy = float((top5 == truth[:, None]).any(axis=1).mean())
    assert top5_accuracy >= 0.80, f"top-5 {top5_accuracy:.3f}, top-1 {top1_accuracy:.3f}"
    assert top1_accuracy >= 0.55, f"top-1 {top1_accuracy:.3f}"


@pytest.fixture(scope="module")
def neardup_model():
    """SqueezeNet embeddings of the first 40 near-duplicate groups (160 photos)."""
    from conftest import require_shared

    root = require_shared() / "neardup"
    groups = sorted(p for p in root.iterdir() if p.is_dir())[:NEARDUP_GROUPS]
    files = [str(group / name) for group in groups for name in NEARDUP_MEMBERS]
    assert all(Path(f).is_file() for f in files)
    model = lk.create(files, model="squeezenet_v1.1", verbose=False)
    assert len(model.failures) == 0 and len(model.labels) == len(files)
    return model, np.repeat(np.arange(len(groups)), len(NEARDUP_MEMBERS)), files


@pytest.mark.needs_shared
def test_near_duplicates_are_closer_than_unrelated_photos(neardup_model):
    model, groups, _ = neardup_model
    intra, inter = intra_inter(pairwise_euclidean(model.embeddings), groups)
    assert intra < 0.9 * inter, (intra, inter)


@pytest.mark.needs_shared
def test_original_finds_its_edits(neardup_model):
    model, groups, files = neardup_model
    originals = files[:: len(NEARDUP_MEMBERS)]
    result = model.query(originals, k=2, verbose=False)
    assert (result.loc[result["rank"] == 1, "distance"] == 0.0).all()  # each original finds itself first
    nearest_other = result.loc[result["rank"] == 2, "reference_label"].to_numpy()
    found = float((groups[nearest_other] == np.arange(NEARDUP_GROUPS)).mean())
    assert found >= 0.75, f"only {found:.2f} of originals have an edit of theirs as nearest other photo"


@pytest.mark.needs_shared
def test_neardup_ns_score(neardup_model):
    """UKBench N-S: group members among each photo's top 4 (itself included); 4 is perfect, ~1.06 is chance."""
    model, groups, _ = neardup_model
    result = model.query(model.embeddings, k=4, verbose=False)
    hits = groups[result["reference_label"].to_numpy()] == groups[result["query_label"].to_numpy()]
    ns = hits.sum() / len(groups)
    assert ns >= 1.8, ns


@pytest.fixture(scope="module")
def squeezenet_sample():
    """SqueezeNet (no longer the default network) on the 80 vendored photos."""
    from conftest import SAMPLES

    return lk.create(SAMPLES, model="squeezenet_v1.1", verbose=False)


def test_sample_classes_are_closer_within_than_across(squeezenet_sample, sample_classes):
    sample_model = squeezenet_sample
    intra, inter = intra_inter(pairwise_euclidean(sample_model.embeddings), sample_classes)
    assert intra < inter, (intra, inter)
    # and per class, for most classes
    distances = pairwise_euclidean(sample_model.embeddings)
    better = 0
    for name in CLASSES:
        inside = sample_classes == name
        block = distances[np.ix_(inside, inside)]
        within = block[~np.eye(len(block), dtype=bool)].mean()
        across = distances[np.ix_(inside, ~inside)].mean()
        better += within < across
    assert better >= 7, f"only {better} of 10 classes are tighter than their distance to the others"


def test_embeddings_are_pooled_relu_features(squeezenet_sample):
    sample_model = squeezenet_sample
    assert sample_model.embeddings.shape == (80, 512)
    assert sample_model.embeddings.dtype == np.float32
    assert (sample_model.embeddings >= 0).all()  # average of ReLU outputs
    assert np.isfinite(sample_model.embeddings).all()
    assert len(np.unique(sample_model.embeddings.round(3), axis=0)) == 80


# -------------------------------------------------------------------- weights and ONNX cache


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unpickler_refuses_anything_but_numpy(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"conv10": [_Exploit(marker)]})
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        NumpyUnpickler(io.BytesIO(payload)).load()
    evil_file = tmp_path / "weights.pkl"
    evil_file.write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        squeezenet.load_weights(evil_file)
    assert not marker.exists()  # nothing was executed
    assert pickle.loads(payload) == {"conv10": [0]} and marker.exists()  # (the plain unpickler would run it)


def test_unpickler_admits_numpy_arrays(tmp_path):
    weights = {"conv10": [np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3), np.zeros(3, np.float32)]}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(weights))
    loaded = squeezenet.load_weights(path)
    np.testing.assert_array_equal(loaded["conv10"][0], weights["conv10"][0])
    path.write_bytes(pickle.dumps({"something": [np.zeros(2)]}))
    with pytest.raises(ValueError, match="expected SqueezeNet layers"):
        squeezenet.load_weights(path)


def test_real_weights_file_loads_with_the_safe_unpickler():
    weights = squeezenet.load_weights()
    assert set(weights) >= {"conv1", "conv10", "fire2/squeeze1x1", "fire9/expand3x3"}
    kernel, bias = weights["conv10"]
    assert kernel.shape == (1, 1, 512, 1000) and bias.shape == (1000,)


def test_corrupted_cached_onnx_is_rebuilt(tmp_path, monkeypatch):
    spec = get_spec("squeezenet_v1.1")
    shared = spec.onnx_file()  # the session's converted file
    good_sha = hashlib.sha256(shared.read_bytes()).hexdigest()
    # Work on a private copy of the cache: other test sessions may be reading the shared one.
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    models = cache_dir() / "models"
    models.mkdir(parents=True)
    shutil.copy(shared, models / shared.name)
    shutil.copy(shared.with_suffix(".json"), models / "squeezenet_v1.1.json")
    path = spec.onnx_file()
    assert path == models / "squeezenet_v1.1.onnx"
    mtime = path.stat().st_mtime_ns
    assert spec.onnx_file() == path and path.stat().st_mtime_ns == mtime  # a sound file is not rebuilt

    path.write_bytes(b"garbage, not an ONNX model" * 100)
    assert spec.onnx_file() == path
    data = path.read_bytes()
    sidecar = json.loads((models / "squeezenet_v1.1.json").read_text())
    assert sidecar["sha256"] == hashlib.sha256(data).hexdigest() == good_sha  # the conversion is deterministic
    assert sidecar["builder_version"] == squeezenet.BUILDER_VERSION
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(["embedding"], {"image": np.zeros((1, 3, 224, 224), np.float32)})[0]
    assert out.shape == (1, 512)
    assert not [p.name for p in models.iterdir() if p.name.endswith(".tmp")]  # no half-written files left


def test_missing_or_stale_sidecar_rebuilds(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    spec = get_spec("squeezenet_v1.1")
    path = spec.onnx_file()  # built from the weights into an empty cache
    sidecar = path.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**record, "builder_version": record["builder_version"] - 1}))
    path.write_bytes(b"stale")
    spec.onnx_file()
    assert json.loads(sidecar.read_text()) == record
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]
