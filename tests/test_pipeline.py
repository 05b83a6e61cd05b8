"""The embedding pipeline: equals the straightforward path, reuses its cache, survives kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

import lookalike as lk
from conftest import SAMPLES
from lookalike.embed import cache as cache_module
from lookalike.embed.cache import EmbeddingCache, FileKey
from lookalike.embed.extractor import Embedder
from lookalike.embed.registry import get_spec
from lookalike.ingest.decode import decode_image, load_rgb
from lookalike.ingest.pixel_facts import pixel_facts

SAMPLE_FILES = sorted(SAMPLES.rglob("*.jpg"))


@pytest.fixture
def private_cache(tmp_path, monkeypatch, lookalike_cache):
    """An empty embedding cache for one test (the converted ONNX model is still shared)."""
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "models").symlink_to((lookalike_cache / "models").resolve(), target_is_directory=True)
    monkeypatch.setenv("LOOKALIKE_CACHE", str(folder))
    return folder


def straightforward_embeddings(paths: list[Path]) -> np.ndarray:
    """Reference path: decode, numpy normalisation, the raw float NCHW network, one image at a time."""
    spec = get_spec("squeezenet_v1.1")
    prep = spec.preprocessing
    session = ort.InferenceSession(str(spec.onnx_file()), providers=["CPUExecutionProvider"])
    rows = []
    for path in paths:
        image = load_rgb(path, min_size=prep.size).resize(prep.size, Image.BILINEAR)
        pixels = np.asarray(image, np.float32)[:, :, ::-1] * prep.scale - np.asarray(prep.mean, np.float32)
        tensor = (pixels / np.asarray(prep.std, np.float32)).transpose(2, 0, 1)[None].copy()
        rows.append(session.run([spec.output_name], {spec.input_name: tensor})[0][0])
    return np.stack(rows)


def test_pipelined_extractor_matches_straightforward_path():
    paths = SAMPLE_FILES[:24]
    result = Embedder(get_spec("squeezenet_v1.1")).extract([str(p) for p in paths], batch_size=5, verbose=False)
    assert result.ok.tolist() == list(range(24)) and result.failures == []
    expected = straightforward_embeddings(paths)
    np.testing.assert_allclose(result.embeddings, expected, rtol=1e-4, atol=1e-4)


def test_batch_composition_does_not_change_embeddings():
    sources = [str(p) for p in SAMPLE_FILES[:20]]
    embedder = Embedder(get_spec("squeezenet_v1.1"))
    one_batch = embedder.extract(sources, batch_size=64, verbose=False).embeddings
    small_batches = embedder.extract(sources, batch_size=3, verbose=False).embeddings
    assert np.array_equal(one_batch, small_batches)  # bit-identical: a resumed run equals a fresh one


def test_large_jpeg_is_decoded_at_reduced_scale_with_the_same_meaning(tmp_path):
    """draft() decodes a camera-size JPEG at 1/8 scale; the embedding stays that of the photo."""
    photo = Image.open(SAMPLE_FILES[0]).convert("RGB")
    big = photo.resize((photo.width * 8, photo.height * 8), Image.BICUBIC)
    path = tmp_path / "big.jpg"
    big.save(path, quality=92)
    decoded = load_rgb(path, min_size=(224, 224))
    assert decoded.size == (big.width // 8, big.height // 8)  # reduced in the DCT domain
    assert load_rgb(path).size == big.size  # without min_size: full decode
    embedder = Embedder(get_spec("squeezenet_v1.1"))
    fast = embedder.extract([str(path)], verbose=False).embeddings[0]
    full = embedder.run(embedder.preprocess(load_rgb(path))[None])[0]
    cosine = fast @ full / np.linalg.norm(fast) / np.linalg.norm(full)
    assert cosine > 0.98


def _folder_of_copies(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        target = folder / f"img_{i:04d}.jpg"
        shutil.copyfile(SAMPLE_FILES[i % len(SAMPLE_FILES)], target)
        files.append(target)
    return files


def test_reindex_embeds_only_new_and_changed_files(tmp_path, private_cache):
    folder = tmp_path / "photos"
    files = _folder_of_copies(folder, 60)
    first = lk.create(folder, verbose=False)
    assert first.build_stats == {"embedded": 60, "from_cache": 0, "failed": 0}

    unchanged = lk.create(folder, verbose=False)
    assert unchanged.build_stats == {"embedded": 0, "from_cache": 60, "failed": 0}
    assert np.array_equal(unchanged.embeddings, first.embeddings)

    added = [folder / f"new_{i}.jpg" for i in range(10)]
    for i, path in enumerate(added):
        shutil.copyfile(SAMPLE_FILES[-1 - i], path)
    grown = lk.create(folder, verbose=False)
    assert grown.build_stats == {"embedded": 10, "from_cache": 60, "failed": 0}

    Image.open(SAMPLE_FILES[70]).save(files[0])  # new content, new size and mtime
    files[1].unlink()
    changed = lk.create(folder, verbose=False)
    assert changed.build_stats == {"embedded": 1, "from_cache": 68, "failed": 0}
    paths = changed.references["path"].tolist()
    assert str(files[1]) not in paths and len(paths) == 69
    row = paths.index(str(files[0]))
    expected = lk.create([files[0]], verbose=False, cache=False).embeddings[0]
    assert not np.array_equal(first.embeddings[0], expected)
    np.testing.assert_array_equal(changed.embeddings[row], expected)


def _entry(path):
    """A cache entry for ``path``: its key, a made-up vector, its header and its real pixel facts."""
    image, info = decode_image(path)
    return FileKey.of(path), np.arange(4, dtype=np.float32), info, pixel_facts(image)


def test_cache_is_keyed_by_model_fingerprint_and_keeps_the_pixel_facts(tmp_path):
    store = EmbeddingCache(tmp_path / "c.sqlite", "model-a", 4)
    entry = _entry(SAMPLE_FILES[0])
    key = entry[0]
    store.put([entry])
    other = EmbeddingCache(tmp_path / "c.sqlite", "model-b", 4)
    assert other.get([key]) == {} and len(store.get([key])) == 1
    assert store.get([key])[0].facts == entry[3]
    moved = FileKey(key.path, key.size, key.mtime_ns + 1)
    assert store.get([moved]) == {}  # a touched file is not trusted
    store.close()
    other.close()


def test_cached_embeddings_whose_facts_are_of_an_older_version_only_have_their_facts_read_again(tmp_path):
    # A new kind of fingerprint (a new FACTS_VERSION) once meant every cached photo was embedded again.
    import zlib

    from lookalike.embed import DEFAULT_MODEL
    from lookalike.ingest.pixel_facts import FACTS_VERSION

    spec = get_spec(DEFAULT_MODEL)
    files = []
    for source in SAMPLE_FILES[:12]:
        files.append(str(tmp_path / source.name))
        shutil.copy2(source, files[-1])
    store = EmbeddingCache(tmp_path / "c.sqlite", spec.fingerprint, spec.dim)
    first = Embedder(spec).extract(files, verbose=False, cache=store)
    rows = store._db.execute("SELECT path, vector, facts FROM embeddings").fetchall()
    for path, vector, facts in rows:  # facts stored by the version before, their checksum right
        older = bytes([FACTS_VERSION - 1]) + facts[1:]
        store._db.execute(
            "UPDATE embeddings SET facts=?, crc=? WHERE path=?", (older, zlib.crc32(vector + older), path)
        )
    store._db.commit()
    keys = [FileKey.of(f) for f in files]
    assert len(rows) == len(files) and all(hit.facts is None for hit in store.get(keys).values())
    # One photo damaged since, its size and time kept: its facts cannot be read again, and it is a failure.
    damaged = os.stat(files[3])
    Path(files[3]).write_bytes(b"\0" * damaged.st_size)
    os.utime(files[3], ns=(damaged.st_atime_ns, damaged.st_mtime_ns))
    again = Embedder(spec)
    second = again.extract(files, verbose=False, cache=store)
    assert again._sessions == {}  # no network was run: every embedding came from the cache
    kept = [i for i in range(len(files)) if i != 3]
    assert second.ok.tolist() == kept and [f.position for f in second.failures] == [3]
    assert np.array_equal(second.embeddings, first.embeddings[kept])
    assert second.facts == [first.facts[i] for i in kept]
    assert [hit.facts for p, hit in sorted(store.get(keys).items()) if p != 3] == second.facts
    store.close()


def test_a_damaged_vector_in_the_cache_is_a_miss_not_a_wrong_embedding(tmp_path):
    store = EmbeddingCache(tmp_path / "c.sqlite", "m", 4)
    entry = _entry(SAMPLE_FILES[0])
    key = entry[0]
    store.put([entry])
    assert len(store.get([key])) == 1
    flipped = np.array([0, 1, 2, 1e30], dtype=np.float32).tobytes()  # bytes changed on disk, checksum not
    store._db.execute("UPDATE embeddings SET vector=?", (flipped,))
    store._db.commit()
    assert store.get([key]) == {}
    store.close()


def test_damaged_cache_is_rebuilt_and_newer_schema_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    store = EmbeddingCache(path, "m", 4)
    assert len(store) == 0
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(cache_module.SCHEMA_VERSION + 1),))
    with pytest.raises(RuntimeError, match="newer lookalike"):
        EmbeddingCache(path, "m", 4)


def test_a_cache_damaged_in_the_middle_is_moved_aside_and_rebuilt(private_cache):
    files = sorted(SAMPLES.rglob("*.jpg"))[:40]
    expected = lk.create(files, verbose=False).embeddings
    database = private_cache / "embeddings.sqlite"
    data = bytearray(database.read_bytes())
    noise = np.random.default_rng(0)
    page = int.from_bytes(data[16:18], "big")  # the database header (page 1) stays whole: SQLite opens the file
    for start in range(page, len(data), page):  # every other page's header is noise: queries find it malformed
        data[start : start + 64] = noise.integers(0, 256, 64, dtype=np.uint8).tobytes()
    database.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match=r"embeddings.sqlite is damaged .*moved to embeddings.sqlite.damaged-"):
        again = lk.create(files, verbose=False)
    np.testing.assert_array_equal(again.embeddings, expected)
    assert again.build_stats["embedded"] == 40
    assert len(list(private_cache.glob("embeddings.sqlite.damaged-*"))) == 1
    assert lk.create(files, verbose=False).build_stats["from_cache"] == 40  # the rebuilt cache serves the next run


def test_a_cache_that_cannot_be_opened_or_written_never_stops_indexing(private_cache, tmp_path):
    files = sorted(SAMPLES.rglob("*.jpg"))[:24]
    expected = lk.create(files, verbose=False, cache=False).embeddings
    (private_cache / "embeddings.sqlite").mkdir()  # a folder where the database should be
    with pytest.warns(RuntimeWarning, match="embeddings.sqlite cannot be opened .*without it"):
        model = lk.create(files, verbose=False)
    np.testing.assert_array_equal(model.embeddings, expected)
    (private_cache / "embeddings.sqlite").rmdir()
    # A disk that fills up while the cache grows: writes beyond 96 KB fail (RLIMIT_FSIZE, SIGXFSZ ignored).
    script = (
        "import json, resource, signal, warnings, lookalike as lk\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (96 * 1024, 96 * 1024))\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    model = lk.create({[str(f) for f in files]!r}, verbose=False, batch_size=4)\n"
        "print(json.dumps({'warnings': [str(w.message) for w in caught], 'n': len(model.labels)}))\n"
    )
    vectors = tmp_path / "vectors.npy"
    script += f"import numpy as np; np.save({str(vectors)!r}, model.embeddings[:2])\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["n"] == 24
    assert any("cannot be written" in w and "indexing goes on" in w for w in report["warnings"]), report
    np.testing.assert_array_equal(np.load(vectors), expected[:2])


def _cached_rows(cache_folder: Path) -> int:
    try:
        with sqlite3.connect(cache_folder / "embeddings.sqlite", timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill_9_mid_index_then_resume_gives_the_uninterrupted_result(tmp_path, private_cache):
    folder = tmp_path / "photos"
    _folder_of_copies(folder, 240)
    command = [sys.executable, "-m", "lookalike.cli", "index", str(folder), "-o", str(tmp_path / "out"), "-q"]
    command += ["--batch-size", "8"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _cached_rows(private_cache) < 24 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "indexing finished before it could be killed; use more files"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    done_before = _cached_rows(private_cache)
    assert 24 <= done_before < 240
    assert not (tmp_path / "out").exists()  # nothing half-written where the model goes

    resumed = subprocess.run(command[:-2] + ["--json"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    stats = json.loads(resumed.stdout)
    assert stats["from_cache"] >= done_before and stats["embedded"] == 240 - stats["from_cache"]
    model = lk.load_model(tmp_path / "out")
    fresh = lk.create(folder, verbose=False, cache=False)
    assert model.references["path"].tolist() == fresh.references["path"].tolist()
    assert np.array_equal(np.asarray(model.embeddings), fresh.embeddings)


def test_cli_prints_one_summary_line_and_no_progress_when_quiet(tmp_path, private_cache):
    folder = tmp_path / "photos"
    _folder_of_copies(folder, 12)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    run = subprocess.run(
        [sys.executable, "-m", "lookalike.cli", "index", str(folder), "-o", str(tmp_path / "m"), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("\n") == 1
    assert "indexed 12 images (12 embedded, 0 from cache, 1 skipped)" in run.stdout
    assert "broken.jpg" in run.stderr and "Embedding" not in run.stderr
