"""lookalike.match and `lookalike match`: set-to-set pairs on real photos, against a dense brute force."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import lookalike as lk
from conftest import DEFAULT_DIM, SAMPLES
from lookalike.cli import main
from lookalike.embed.registry import CAFFE, get_spec
from lookalike.index.exact import pairs_within

# Distances are measured in float32 from the two rows themselves (faiss's SIMD kernels, no expansion of a
# matrix product): within float32 resolution of the float64 definition, and exactly 0 for identical rows.
FLOAT32_RESOLUTION = {"rtol": 2e-6, "atol": 2e-6}

PHOTOS = sorted(str(p) for p in SAMPLES.rglob("*.jpg"))
SET_A = PHOTOS[0::2]  # 40 photos
SET_B = PHOTOS[1::2]  # 40 others


def dense(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    if metric == "cosine":
        return 1.0 - (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    if metric == "dot":
        return -a @ b.T
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def between_values(distances: np.ndarray, count: int) -> float:
    """A threshold keeping exactly the ``count`` smallest distances (midway to the next: no pair on the edge)."""
    s = np.sort(distances.ravel())
    return float((s[count - 1] + s[count]) / 2)


@pytest.fixture(scope="module")
def set_b_with_edits(tmp_path_factory, sample_model):
    """Set B plus re-compressed, resized and cropped copies of 5 photos of set A: real near-duplicates across sets."""
    folder = tmp_path_factory.mktemp("match-b")
    extra = []
    for i, source in enumerate(SET_A[:5]):
        image = Image.open(source).convert("RGB")
        w, h = image.size
        edited = [image.resize((w // 2, h // 2)), image, image.crop((w // 10, h // 10, w - w // 10, h - h // 10))][
            i % 3
        ]
        target = folder / f"edit-{i}.jpg"
        edited.save(target, "JPEG", quality=35)
        extra.append(str(target))
    return SET_B + extra


@pytest.fixture(scope="module")
def models(set_b_with_edits, sample_model):
    return lk.create(SET_A, verbose=False), lk.create(set_b_with_edits, verbose=False)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot"])
def test_threshold_pairs_equal_brute_force(models, set_b_with_edits, metric):
    model_a, model_b = models
    full = dense(model_a.embeddings, model_b.embeddings, metric)
    threshold = between_values(full, 30)
    pairs = lk.match(SET_A, set_b_with_edits, threshold=threshold, metric=metric, verbose=False)
    assert pairs.columns.tolist() == ["a_label", "b_label", "distance", "a_path", "b_path"]
    rows, cols = np.nonzero(full <= threshold)
    assert sorted(zip(pairs["a_label"], pairs["b_label"], strict=True)) == sorted(zip(rows, cols, strict=True))
    np.testing.assert_allclose(pairs["distance"], full[pairs["a_label"], pairs["b_label"]], **FLOAT32_RESOLUTION)
    assert pairs["a_path"].tolist() == [SET_A[i] for i in pairs["a_label"]]
    assert pairs["b_path"].tolist() == [set_b_with_edits[j] for j in pairs["b_label"]]
    # ordered by a, then distance
    assert pairs.sort_values(["a_label", "distance"], kind="stable").index.tolist() == list(range(len(pairs)))


@pytest.mark.parametrize("descriptor", ["gem", "plain"])
def test_edited_copies_are_each_others_nearest(set_b_with_edits, descriptor):
    set_a = lk.create(SET_A, descriptor=descriptor, verbose=False)
    set_b = lk.create(set_b_with_edits, descriptor=descriptor, verbose=False)
    edits = {path: i - len(SET_B) for i, path in enumerate(set_b_with_edits) if Path(path).name.startswith("edit-")}
    pairs = lk.match(set_a, set_b, k=1)
    # Another a image may find an edit nearest (a hat finds the edited hat); each original finds its own.
    own = pairs["b_path"].map(edits).eq(pairs["a_label"])
    assert sorted(pairs.loc[own, "a_label"]) == [0, 1, 2, 3, 4]
    back = lk.match(set_b, set_a, k=1)
    copies = back[back["a_path"].isin(list(edits))]
    assert (copies["b_label"].to_numpy() == copies["a_path"].map(edits).to_numpy()).all()  # and back again
    if descriptor == "plain":
        # Plain features also keep every copy closer than any unrelated pair. gem does not quite: a 10 %
        # crop at JPEG quality 35 is 0.166 from its original, blue jeans and beige shorts on one hanger 0.165.
        assert pairs.loc[own, "distance"].max() < pairs.loc[~own, "distance"].min()


@pytest.mark.parametrize(("k", "with_threshold"), [(3, False), (2, True)])
def test_top_k_equals_brute_force(models, set_b_with_edits, k, with_threshold):
    model_a, model_b = models
    full = dense(model_a.embeddings, model_b.embeddings, "cosine")
    threshold = float(np.median(full)) / 2 if with_threshold else None
    pairs = lk.match(model_a, model_b, k=k, threshold=threshold, metric="cosine", verbose=False)
    expected = []
    for i, row in enumerate(full):
        expected += [
            (i, int(j)) for j in np.lexsort((np.arange(len(row)), row))[:k] if threshold is None or row[j] <= threshold
        ]
    assert list(zip(pairs["a_label"], pairs["b_label"], strict=True)) == expected
    if with_threshold:
        assert 0 < len(pairs) < k * len(SET_A)


def test_saved_models_and_arrays_are_inputs(models, set_b_with_edits, tmp_path):
    model_a, model_b = models
    model_a.save(tmp_path / "a.lookalike")
    options = {"threshold": 0.3, "metric": "cosine"}
    from_disk = lk.match(str(tmp_path / "a.lookalike"), set_b_with_edits, **options, verbose=False)
    from_paths = lk.match(SET_A, set_b_with_edits, **options, verbose=False)
    pd.testing.assert_frame_equal(from_disk, from_paths)
    from_arrays = lk.match(model_a.embeddings, model_b.embeddings, **options)
    pd.testing.assert_frame_equal(from_arrays, from_paths[["a_label", "b_label", "distance"]])


def test_blocks_do_not_change_the_answer():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(300, 32)).astype(np.float32)
    b = np.concatenate([a[:50] + 0.05 * rng.normal(size=(50, 32)).astype(np.float32), rng.normal(size=(250, 32))])
    b = b.astype(np.float32)
    for metric in ("cosine", "euclidean", "dot"):
        threshold = between_values(dense(a, b, metric), 200)
        whole = pairs_within(a, b, metric, threshold, block_a=300, block_b=300)
        tiny = pairs_within(a, b, metric, threshold, block_a=7, block_b=13)
        as_set = [
            {(int(i), int(j)) for part in parts for i, j in zip(part[0], part[1], strict=True)}
            for parts in (whole, tiny)
        ]
        assert as_set[0] == as_set[1] and len(as_set[0]) == 200


def test_errors_are_clear(models, tmp_path):
    model_a, model_b = models
    with pytest.raises(ValueError, match="threshold= .* and/or k=.*no default was measured.*precomputed"):
        lk.match(model_a.embeddings, model_b.embeddings)  # no threshold was measured for vectors of unknown origin
    with pytest.raises(ValueError, match="threshold must be a non-negative cosine distance"):
        lk.match(model_a, model_b, threshold=-0.1, metric="cosine")
    with pytest.raises(ValueError, match="threshold must be a non-negative euclidean distance"):
        lk.match(model_a, model_b, threshold=-0.1)  # the models' own metric
    with pytest.raises(ValueError, match="k must be a positive integer"):
        lk.match(model_a, model_b, k=0)
    with pytest.raises(ValueError, match="metric must be one of"):
        lk.match(model_a, model_b, k=1, metric="manhattan")
    with pytest.raises(ValueError, match=f"{DEFAULT_DIM}-d .* 8-d"):
        lk.match(model_a, np.ones((3, 8), np.float32), k=1)
    onnx_file = tmp_path / "other.onnx"
    shutil.copyfile(get_spec("squeezenet_v1.1").onnx_file(), onnx_file)
    other = {**CAFFE.to_dict(), "mean": (0.0, 0.0, 0.0)}  # same network, other preprocessing: other embeddings
    other_model = lk.create(SET_B[:3], model=onnx_file, preprocessing=other, verbose=False)
    squeezenet = lk.create(SET_B[:3], model="squeezenet_v1.1", verbose=False)
    with pytest.raises(ValueError, match="embedded by 'squeezenet_v1.1' .* distances between them mean nothing"):
        lk.match(squeezenet, other_model, k=1)
    with pytest.raises(ValueError, match="set b: .*no images found"):
        lk.match(model_a, str(tmp_path / "empty-folder-*.jpg"), k=1)


def test_cli_match_writes_pairs(models, set_b_with_edits, tmp_path, capsys):
    model_a, _ = models
    model_a.save(tmp_path / "a.lookalike")
    folder_b = tmp_path / "b"
    folder_b.mkdir()
    for i, path in enumerate(set_b_with_edits):
        shutil.copyfile(path, folder_b / f"{i:03d}.jpg")
    out = tmp_path / "pairs.csv"
    assert (
        main(["match", str(tmp_path / "a.lookalike"), str(folder_b), "--threshold", "0.25", "-q", "-o", str(out)]) == 0
    )
    written = pd.read_csv(out)
    expected = lk.match(model_a, str(folder_b), threshold=0.25, verbose=False)
    assert len(written) == len(expected) > 0
    assert written["b_path"].tolist() == expected["b_path"].tolist()
    assert f"wrote {len(expected)} pairs" in capsys.readouterr().out
    assert main(["match", str(tmp_path / "a.lookalike"), str(folder_b), "-q", "--metric", "dot"]) == 1
    error = capsys.readouterr().err  # no threshold measured for dot: said in the command's words
    assert "--threshold" in error and "-k" in error and "threshold=" not in error


@pytest.mark.parametrize(("threshold", "k"), [(0.3, None), (None, 3), (0.25, 4)])
def test_pairs_streamed_to_a_file_equal_the_table(models, tmp_path, monkeypatch, threshold, k):
    import importlib

    model_a, model_b = models
    whole = lk.match(model_a, model_b, threshold=threshold, k=k, metric="cosine")
    monkeypatch.setattr(importlib.import_module("lookalike.operations.match"), "BLOCK_A", 7)  # 40 photos: 6 blocks of A
    blocked = lk.match(model_a, model_b, threshold=threshold, k=k, metric="cosine")
    pd.testing.assert_frame_equal(blocked, whole)
    for suffix, read in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        path = lk.match(model_a, model_b, threshold=threshold, k=k, metric="cosine", path=tmp_path / f"pairs{suffix}")
        assert path == tmp_path / f"pairs{suffix}" and not list(tmp_path.glob(".*partial"))
        written = read(path)
        assert (written.pop("metric") == whole.attrs["metric"]).all() and whole.attrs["metric"] == "cosine"
        pd.testing.assert_frame_equal(written, whole, check_dtype=suffix == ".parquet")
    with pytest.raises(ValueError, match=r"pairs\.txt must end in \.parquet or \.csv"):
        lk.match(model_a, model_b, k=1, path=tmp_path / "pairs.txt")


@pytest.mark.needs_shared
def test_neardup_edits_match_their_originals(needs_shared):
    folders = sorted((needs_shared / "neardup").iterdir())[:40]
    originals = [str(f / "original.jpg") for f in folders]
    edits = [str(f / f"{kind}.jpg") for f in folders for kind in ("crop", "rotate", "overlay")]
    model_a = lk.create(originals, verbose=False)
    model_b = lk.create(edits, verbose=False)
    pairs = lk.match(model_a, model_b, k=3, verbose=False)
    full = dense(model_a.embeddings, model_b.embeddings, "cosine")
    expected = [(i, int(j)) for i, row in enumerate(full) for j in np.lexsort((np.arange(len(row)), row))[:3]]
    assert list(zip(pairs["a_label"], pairs["b_label"], strict=True)) == expected
    hits = np.mean([b // 3 == a for a, b in expected])  # an edit of the same photo among the top 3
    assert hits > 0.5


def test_one_to_one_pairs_each_image_once_closest_first_and_lists_the_unmatched():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(50, 16)).astype(np.float32)
    b = np.concatenate([a[:30] + rng.normal(scale=0.01, size=(30, 16)), rng.normal(size=(10, 16))]).astype(np.float32)
    b = np.concatenate([b, a[:1] + 0.02]).astype(np.float32)  # a second, farther copy of a[0]: left unmatched
    table = lk.match(a, b, model=None, metric="euclidean", threshold=0.5, one_to_one=True, verbose=False)
    pairs = table.dropna(subset=["a_label", "b_label"])
    assert sorted(zip(pairs["a_label"], pairs["b_label"], strict=True)) == [(i, i) for i in range(30)]
    assert pairs["a_label"].is_unique and pairs["b_label"].is_unique
    alone_a = table[table["b_label"].isna()]["a_label"].tolist()
    alone_b = table[table["a_label"].isna()]["b_label"].tolist()
    assert alone_a == list(range(30, 50)) and alone_b == list(range(30, 41))
    assert table["distance"].isna().sum() == 31
    # Without one_to_one, a[0] pairs with both of its copies.
    everything = lk.match(a, b, model=None, metric="euclidean", threshold=0.5, verbose=False)
    assert sorted(everything[everything["a_label"] == 0]["b_label"]) == [0, 40]
