"""What lookalike promises about saved models (docs/faults.md), each shown on real files and real processes.

- A save is atomic: killed at any moment, or read while it runs, the path holds the old model or the new one.
- Models saved in format 1 (before generations) still load, and saving over one converts it.
- Damage is detected: a changed byte anywhere, an empty file, a malformed manifest raise ModelFormatError
  naming the file and the cause, at load, and print as one line.
- Only regular files inside the model are read: no path out of it, no waiting on a FIFO.
- A full disk is named, and a failed save leaves nothing behind.

The tests on format-1 models, the concurrent readers and the changed bytes need nothing new from lookalike:
run against the lookalike that wrote tests/data/format1, they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import lookalike as lk
from conftest import edit_manifest, generation, manifest_of, on_small_tmpfs, repoint, reseal
from lookalike import cli
from lookalike.store import files, storage

FORMAT1 = Path(__file__).parent / "data" / "format1"
#: The arrays a model with a projection and an ANN index holds.
ARRAYS = ("embeddings.npy", "features.npy", "index_ids.npy", "projection_mean.npy", "projection_matrix.npy")


def vectors(seed: int, rows: int, dim: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def full_model() -> lk.ImageSimilarityModel:
    """A model holding every kind of file: a whitening projection and an HNSW index."""
    return lk.create(vectors(5, 600, 16), model=None, descriptor={"whiten": True}, method="hnsw")


@pytest.fixture
def saved(full_model, tmp_path) -> Path:
    path = tmp_path / "m.lookalike"
    full_model.save(path)
    return path


def format1(name: str, tmp_path: Path) -> Path:
    """A private copy of a model saved by lookalike in format 1."""
    return Path(shutil.copytree(FORMAT1 / name, tmp_path / name))


@pytest.fixture
def no_hang():
    """Fail a test that blocks (opening a FIFO waits for a writer) instead of hanging the whole run."""

    def expire(signum, frame):
        raise TimeoutError("blocked for 20 s: something waited on a FIFO")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def one_line_error(argv: list[str], capsys) -> str:
    """Run the CLI, which must fail with one line (no traceback); that line."""
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("lookalike: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------- atomic saves

SAVER = """
import sys
import numpy as np
import lookalike as lk

models = [lk.create(np.random.default_rng(seed).normal(size=(rows, 32)).astype(np.float32), model=None)
          for seed, rows in ((1, 20000), (2, 5000))]
print("ready", flush=True)
for i in range(10**6):
    models[i % 2].save(sys.argv[1])
"""


def test_a_save_killed_at_any_moment_leaves_the_old_or_the_new_model(tmp_path):
    path = tmp_path / "m.lookalike"
    known = {digest(vectors(1, 20000)): "A", digest(vectors(2, 5000)): "B"}
    known[digest(lk.load_model(FORMAT1 / "plain").embeddings)] = "format 1"
    moments = random.Random(17)
    seen = Counter()
    for round_ in range(16):
        if round_ % 4 == 0:  # from a format-1 model again: kills during its conversion
            shutil.rmtree(path, ignore_errors=True)
            shutil.copytree(FORMAT1 / "plain", path)
        saver = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        assert saver.stdout.readline().strip() == "ready"
        time.sleep(moments.uniform(0, 0.15))  # saves take ~30 ms: kills land in every phase of one
        saver.kill()
        saver.wait()
        saver.stdout.close()
        model = lk.load_model(path)
        seen[known[digest(model.embeddings)]] += 1  # a KeyError would be a model that was never saved
        storage.verify(path)  # every byte as saved, not only the sampled ones
    assert {"A", "B"} <= set(seen), seen
    # The next save clears what the killed ones left: half-written generations, temporary files, staging folders.
    lk.create(vectors(3, 10), model=None).save(path)
    assert os.listdir(tmp_path) == ["m.lookalike"]
    assert len(os.listdir(path)) == 2 and len(lk.load_model(path).labels) == 10


READER = """
import hashlib, json, sys
from pathlib import Path
import numpy as np
import lookalike as lk

path, stop = sys.argv[1], Path(sys.argv[2])
seen, errors = {}, []
load_model = lk.load_model  # imported now (lookalike imports its stages on first use): "ready" is ready to load
print("ready", flush=True)
while not stop.exists():
    try:
        model = load_model(path)
        key = hashlib.sha256(np.ascontiguousarray(model.embeddings).tobytes()).hexdigest()
        key += f" {len(model.labels)} {model.labels[-1]}"
        seen[key] = seen.get(key, 0) + 1
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
print(json.dumps({"seen": seen, "errors": errors[:5], "failed": len(errors)}))
"""


def test_readers_never_see_a_missing_or_half_model_while_it_is_saved_again(tmp_path):
    path, stop = tmp_path / "m.lookalike", tmp_path / "stop"
    models = [lk.create(vectors(1, 20000), model=None), lk.create(vectors(2, 5000), model=None)]
    expected = {f"{digest(m.embeddings)} {len(m.labels)} {m.labels[-1]}" for m in models}
    models[0].save(path)
    readers = [
        subprocess.Popen([sys.executable, "-c", READER, str(path), str(stop)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for reader in readers:
        assert reader.stdout.readline().strip() == "ready"
    for i in range(1, 41):
        models[i % 2].save(path)
    stop.touch()
    reports = [json.loads(reader.communicate(timeout=120)[0]) for reader in readers]
    for report in reports:
        assert report["failed"] == 0, report["errors"]
        assert set(report["seen"]) <= expected
    loads = Counter()
    for report in reports:
        loads.update(report["seen"])
    assert len(loads) == 2 and sum(loads.values()) >= 20, loads  # both models read, many times


def test_saves_to_one_path_take_turns(tmp_path):
    path = tmp_path / "m.lookalike"
    models = [lk.create(vectors(seed, rows), model=None) for seed, rows in ((1, 3000), (2, 2000))]
    threads = [threading.Thread(target=lambda m=m: [m.save(path) for _ in range(5)]) for m in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(lk.load_model(path).labels) in (3000, 2000)
    assert storage.verify(path)["files"] == 3
    assert os.listdir(tmp_path) == ["m.lookalike"] and len(os.listdir(path)) == 2


def test_a_save_removes_what_interrupted_saves_left(full_model, saved, tmp_path):
    # Beside the model, hidden folders of interrupted saves (lookalike before generations left those too)...
    (tmp_path / ".m.lookalike.saving-k2j3").mkdir()
    (tmp_path / ".m.lookalike.saving-k2j3" / "embeddings.npy").write_bytes(b"half")
    (tmp_path / ".m.lookalike.old-x8d0" / "old").mkdir(parents=True)
    # ...and inside it, a generation never pointed to and a pointer never renamed into place.
    (saved / "gen-000007").mkdir()
    (saved / ".CURRENT.123.456.partial").write_text("{")
    busy = tmp_path / ".m.lookalike.saving-busy"  # another process's save, still writing
    busy.mkdir()
    with files.locked(busy):
        full_model.save(saved)
    assert sorted(os.listdir(tmp_path)) == [".m.lookalike.saving-busy", "m.lookalike"]
    assert sorted(os.listdir(saved)) == ["CURRENT", "gen-000008"]


# ---------------------------------------------------------------------------------- format 1


@pytest.mark.parametrize("name, count", [("plain", 3), ("hnsw_whiten", 8)])
def test_models_saved_in_format_1_load_and_saving_over_one_converts_it(name, count, tmp_path, capsys):
    path = format1(name, tmp_path)
    model = lk.load_model(path)
    queries = np.asarray(model.raw_embeddings[:5])
    before = model.query(queries, k=3)
    assert before["reference_label"].tolist()[::3] == model.labels[:5].tolist()  # each finds itself first
    assert cli.main(["info", str(path), "--checksums"]) == 0
    assert "nothing to check, a format-1 model has no checksums" in capsys.readouterr().out
    model.save(path)
    assert sorted(os.listdir(path)) == ["CURRENT", "gen-000001"] and os.listdir(tmp_path) == [name]
    assert storage.verify(path)["files"] == count  # every file but the manifest, which CURRENT vouches for
    assert lk.load_model(path).query(queries, k=3).equals(before)


# ------------------------------------------------------------------ damage is a one-line error


@pytest.mark.parametrize("name", ARRAYS)
def test_an_empty_array_file_is_a_format_error_naming_it(name, saved, capsys):
    (generation(saved) / name).write_bytes(b"")
    with pytest.raises(lk.ModelFormatError, match=rf"{name} is damaged: it holds 0 bytes, \d+ were saved"):
        lk.load_model(saved)
    reseal(saved)  # as if saved empty: the array reader itself must refuse it
    with pytest.raises(lk.ModelFormatError, match=rf"{name} is damaged: the file is empty"):
        lk.load_model(saved)
    assert f"{name} is damaged" in one_line_error(["info", str(saved)], capsys)


@pytest.mark.parametrize("name", ("embeddings.npy", "features.npy", "index_ids.npy", "projection_matrix.npy"))
def test_an_empty_array_file_in_format_1_is_a_one_line_error_in_info_and_serve(name, tmp_path, capsys):
    path = format1("hnsw_whiten", tmp_path)
    (path / name).write_bytes(b"")
    assert f"{name} is damaged: the file is empty" in one_line_error(["info", str(path)], capsys)
    assert f"{name} is damaged: the file is empty" in one_line_error(["serve", str(path), "--port", "0"], capsys)


def nested(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


def test_a_deeply_nested_manifest_is_a_format_error(saved, tmp_path, capsys):
    (generation(saved) / "manifest.json").write_text(nested())
    with pytest.raises(lk.ModelFormatError, match="manifest.json is damaged: its SHA-256 is not the one CURRENT"):
        lk.load_model(saved)
    reseal(saved)
    with pytest.raises(lk.ModelFormatError, match="manifest.json is damaged: its JSON is nested too deeply"):
        lk.load_model(saved)
    path = format1("plain", tmp_path)
    (path / "manifest.json").write_text(nested())
    assert "manifest.json is damaged: its JSON is nested too deeply" in one_line_error(["info", str(path)], capsys)
    assert not storage.is_model_dir(path)  # asked by dedup and match before anything else
    (saved / "CURRENT").write_text(nested(2000))
    assert "CURRENT is damaged: its JSON is nested too deeply" in one_line_error(["info", str(saved)], capsys)


def set_index(**changes):
    return lambda manifest: manifest["index"].update(changes)


MALFORMED = [
    (lambda manifest: manifest.update(index=[1]), "index is [1], not an object or null"),
    (set_index(search_effort=-5), "its search_effort -5 is not an integer from 1 to 2147483647"),
    (set_index(search_effort=10**30), "its search_effort 1000000000000000000000000000000 is not an integer"),
    (set_index(search_effort=True), "its search_effort True is not an integer"),
    (set_index(recall=[0.9]), "its index recall is [0.9]"),
    (lambda manifest: manifest.update(projection=[1]), "projection is [1], not an object or null"),
    (lambda manifest: manifest["projection"].update(kind="pca"), "unknown projection"),
    (lambda manifest: manifest["projection"].update(params=[1]), "the projection's params are [1], not an object"),
    (lambda manifest: manifest.update(count="600"), "count is '600', not an integer of at least 0"),
    (lambda manifest: manifest.update(batch_size=0), "batch_size is 0, not an integer of at least 1"),
    (lambda manifest: manifest.update(training_time="soon"), "training_time is 'soon', not a number"),
    (lambda manifest: manifest.update(build_stats=[]), "build_stats is [], not an object"),
    (lambda manifest: manifest.update(embedding_model={"fingerprint": "x"}), "embedding_model has no name"),
    (lambda manifest: manifest.update(label_column=7), "label_column is 7, not a column name or null"),
    (lambda manifest: manifest.update(checksums=None), "checksums is None, not an object"),
    (lambda manifest: manifest["checksums"].update(algorithm="md5"), "records no SHA-256 checksums"),
    (lambda manifest: manifest["checksums"].update(block_bytes=2**60), "its checksums have no block size"),
    (
        lambda manifest: manifest["checksums"]["files"]["embeddings.npy"].update(blocks=["0"]),
        "the checksum record of 'embeddings.npy' is malformed",
    ),
]


@pytest.mark.parametrize("change, message", MALFORMED)
def test_a_malformed_manifest_is_a_format_error_at_load(change, message, saved, capsys):
    manifest = manifest_of(saved)
    change(manifest)
    (generation(saved) / "manifest.json").write_text(json.dumps(manifest))
    repoint(saved)  # a manifest written so, by a bug or by hand: its entries are checked, not only its checksum
    with pytest.raises(lk.ModelFormatError, match=re.escape(message)) as excinfo:
        lk.load_model(saved)
    assert "manifest.json" in str(excinfo.value)
    assert message in one_line_error(["info", str(saved)], capsys)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda manifest: manifest.update(index=[1]), "index is [1], not an object or null"),
        (set_index(search_effort=-5), "its search_effort -5 is not an integer from 1 to 2147483647"),
        (lambda manifest: manifest.update(count=None), "count is None"),
    ],
)
def test_a_malformed_format_1_manifest_is_a_one_line_error(change, message, tmp_path, capsys):
    path = format1("hnsw_whiten", tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert message in one_line_error(["info", str(path)], capsys)


# ---------------------------------------------------------------- only the model's own regular files


def test_a_manifest_cannot_name_a_file_outside_the_model(saved, tmp_path, capsys):
    outside = tmp_path / "secret.npy"
    np.save(outside, np.zeros(16, np.float32))
    path = format1("hnsw_whiten", tmp_path)
    for name in (str(outside), "../secret.npy", "."):
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["projection"]["files"]["mean"] = name
        (path / "manifest.json").write_text(json.dumps(manifest))
        assert f"names the file {name!r}: a model reads only its own files" in one_line_error(
            ["info", str(path)], capsys
        )
    projection = {
        **manifest_of(saved)["projection"],
        "files": {"mean": str(outside), "matrix": "projection_matrix.npy"},
    }
    edit_manifest(saved, projection=projection)
    with pytest.raises(lk.ModelFormatError, match="a model reads only its own files"):
        lk.load_model(saved)


def test_a_link_out_of_the_model_is_not_followed(saved, tmp_path):
    mean = generation(saved) / "projection_mean.npy"
    outside = Path(shutil.move(mean, tmp_path / "elsewhere.npy"))
    mean.symlink_to(outside)
    with pytest.raises(lk.ModelFormatError, match="projection_mean.npy leads outside"):
        lk.load_model(saved)
    mean.unlink()
    shutil.move(outside, mean)
    lk.load_model(saved)
    moved = Path(shutil.move(generation(saved), tmp_path / "gen-elsewhere"))
    (saved / moved.name.replace("elsewhere", "000001")).symlink_to(moved)
    with pytest.raises(lk.ModelFormatError, match="gen-000001 leads outside"):
        lk.load_model(saved)


@pytest.mark.parametrize(
    "where",
    [lambda m: generation(m) / "features.npy", lambda m: generation(m) / "index.faiss", lambda m: m / "CURRENT"],
)
def test_a_fifo_in_the_model_is_refused_not_waited_on(where, saved, capsys, no_hang):
    fifo = where(saved)
    fifo.unlink()
    os.mkfifo(fifo)
    assert f"{fifo} is not a regular file" in one_line_error(["info", str(saved)], capsys)
    generation_manifest = saved / "gen-000001" / "manifest.json"
    if fifo.name != "CURRENT":
        generation_manifest.unlink()
        os.mkfifo(generation_manifest)
        assert "manifest.json is not a regular file" in one_line_error(["info", str(saved)], capsys)


@pytest.mark.parametrize("name", ("manifest.json", "features.npy", "projection_mean.npy"))
def test_a_fifo_in_a_format_1_model_is_refused_not_waited_on(name, tmp_path, capsys, no_hang):
    path = format1("hnsw_whiten", tmp_path)
    (path / name).unlink()
    os.mkfifo(path / name)
    assert f"{name} is not a regular file" in one_line_error(["info", str(path)], capsys)
    assert storage.is_model_dir(path) is (name != "manifest.json")


# ----------------------------------------------------------------------------- silent damage


def test_every_changed_byte_of_a_saved_model_is_detected_at_load(saved):
    originals = {path: path.read_bytes() for path in sorted(saved.rglob("*")) if path.is_file()}
    for path, data in originals.items():
        for at in sorted({0, len(data) // 2, len(data) - 1}):
            damaged = bytearray(data)
            damaged[at] ^= 0x01
            path.write_bytes(bytes(damaged))
            with pytest.raises(lk.ModelFormatError) as excinfo:
                lk.load_model(saved)
            assert path.name in str(excinfo.value), (path.name, at, str(excinfo.value))
            path.write_bytes(data)
    assert len(lk.load_model(saved).query(vectors(5, 3, 16), k=2)) == 6  # whole again


@pytest.fixture(scope="module")
def large_saved(tmp_path_factory) -> Path:
    """A model whose embeddings.npy is just over the size hashed whole on every load."""
    rows = storage.FULL_CHECK_BYTES // (1024 * 4) + 64
    path = tmp_path_factory.mktemp("large") / "m.lookalike"
    lk.create(vectors(3, rows, 1024), model=None, method="brute_force").save(path)
    return path


def flip(path: Path, at: int) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 0x01]))


def test_a_large_array_is_sampled_on_load_and_read_whole_by_info_checksums(large_saved, capsys):
    embeddings = generation(large_saved) / "embeddings.npy"
    size = embeddings.stat().st_size
    assert size > storage.FULL_CHECK_BYTES
    checked = storage.verify(large_saved)
    assert checked["files"] == 3 and checked["bytes"] > size
    assert cli.main(["info", str(large_saved), "--checksums"]) == 0
    assert f"verified: 3 files, {checked['bytes']:,} bytes, every SHA-256 matches" in capsys.readouterr().out
    flip(embeddings, 10)  # the header: the first block is hashed on every load
    with pytest.raises(lk.ModelFormatError, match="embeddings.npy is damaged: bytes 0 to 4194304 are not those saved"):
        lk.load_model(large_saved)
    flip(embeddings, 10)
    middle = storage.BLOCK_BYTES * 7 + 123  # a load hashes a few blocks; --checksums reads them all
    flip(embeddings, middle)
    err = one_line_error(["info", str(large_saved), "--checksums"], capsys)
    assert "embeddings.npy is damaged: bytes 29360128 to 33554432 are not those saved" in err
    flip(embeddings, middle)
    os.truncate(embeddings, size - 1)  # sizes are checked on every load
    with pytest.raises(lk.ModelFormatError, match=f"embeddings.npy is damaged: it holds {size - 1} bytes, {size}"):
        lk.load_model(large_saved)


# --------------------------------------------------------------------------------- a full disk

FULL_DISK = """
import json, os, sys
from pathlib import Path
import numpy as np
import lookalike as lk
from lookalike.errors import DiskFull

disk = Path(sys.argv[1])
rng = np.random.default_rng(0)

def model(rows, method="brute_force"):
    return lk.create(rng.normal(size=(rows, 32)).astype(np.float32), model=None, method=method)

model(100).save(disk / "m")
report = {}

def attempt(case, new, free, target):
    status = os.statvfs(disk)
    with open(disk / "ballast", "wb") as f:  # fill the disk but `free` bytes
        f.write(bytes(max(0, status.f_bavail * status.f_frsize - free)))
    try:
        new.save(target)
        outcome = "saved"
    except DiskFull as exc:
        outcome = f"DiskFull: {exc}"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    os.unlink(disk / "ballast")
    report[case] = {"outcome": outcome, "disk": sorted(os.listdir(disk)), "model": sorted(os.listdir(disk / "m")),
                    "count": len(lk.load_model(disk / "m").labels)}

attempt("embeddings", model(20000), 64 * 1024, disk / "m")  # 2.5 MB of embeddings into 64 kB
attempt("faiss index", model(3000, "hnsw"), 600 * 1024, disk / "m")  # 384 kB of embeddings fit, the index not
attempt("first save", model(20000), 64 * 1024, disk / "new")
print(json.dumps(report))
"""


def test_a_full_disk_is_named_and_a_failed_save_leaves_nothing_behind(tmp_path):
    """On a real full disk: an 8 MB tmpfs mounted in a private mount namespace (``unshare``)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = on_small_tmpfs(disk)
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK)
    run = subprocess.run([*mount, sys.executable, str(script), str(disk)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    for case, target in (("embeddings", "m"), ("faiss index", "m"), ("first save", "new")):
        assert report[case] == {
            "outcome": f"DiskFull: no space left on the disk holding {disk / target}",
            "disk": ["m"],  # no staging folder beside it
            "model": ["CURRENT", "gen-000001"],  # the old model, and no half generation
            "count": 100,
        }, case
