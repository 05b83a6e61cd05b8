"""The Ray engine on a local Ray cluster the tests start: same answers as the local engine, faults survived.

Every job embeds real photos for real (fresh caches or ``cache=False``), on
``ray.init(num_cpus=2)``; one test drives the CLI in a second process joined
to that cluster. Waits are bounded: a stuck job fails its test, it never hangs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lookalike as lk
from conftest import SAMPLES, _in_ci
from lookalike.embed.registry import get_spec
from lookalike.engines import RayEngine

try:
    import ray
except ImportError:
    if _in_ci():
        pytest.fail("CI is set but ray is not installed: pip install -e '.[dev]' (the ray extra)", pytrace=False)
    pytest.skip("ray is not installed here (pip install 'lookalike[ray]')", allow_module_level=True)

from lookalike.distributed import embed_on_ray, list_inputs
from lookalike.distributed.inputs import filesystem
from lookalike.distributed.shards import read_shards, schema
from lookalike.ingest.pixel_facts import COLUMNS as PIXEL_FACTS

JOB_TIMEOUT = 240  # seconds: generous for 2 cores shared with other jobs; a hang fails instead


@pytest.fixture(scope="module")
def cluster(lookalike_cache) -> str:
    """A local 2-CPU Ray cluster for this module (workers inherit $LOOKALIKE_CACHE); its GCS address."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def copies(folder: Path, times: int) -> list[Path]:
    """``times`` copies of every vendored photo under ``folder`` (distinct paths, real JPEGs)."""
    originals = sorted(SAMPLES.rglob("*.jpg"))
    files = []
    for copy in range(times):
        for original in originals:
            target = folder / f"{copy}" / original.parent.name / original.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(original, target)
            files.append(target)
    return files


def shard_rows(work: Path) -> pd.DataFrame:
    """Every row of every complete shard file, duplicates kept."""
    tables = []
    for file in sorted((work / "shards").glob("*.parquet")):
        try:
            tables.append(pq.read_table(file, columns=["id", "path", "reason"]).to_pandas())
        except (OSError, pa.ArrowException):
            continue  # a shard cut short by the crash
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["id", "path", "reason"])


def settled_ids(work: Path, quiet: float = 3.0) -> set:
    """The ids the shards hold once no shard has been written for ``quiet`` seconds (within JOB_TIMEOUT)."""
    ids, since = set(shard_rows(work)["id"]), time.monotonic()
    deadline = since + JOB_TIMEOUT
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            pytest.fail(f"shards still written {JOB_TIMEOUT} s after the driver was killed")
        time.sleep(0.2)
        now = set(shard_rows(work)["id"])
        if now != ids:
            ids, since = now, time.monotonic()
    return ids


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def actor_pids() -> list[int]:
    """Processes of the Ray Data actors running lookalike's EmbedActor (Ray titles them after the class)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"EmbedActor" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:  # the process ended while we looked
            continue
    return found


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie is dead, only not yet reaped


def assert_same_neighbours(ray_model: lk.ImageSimilarityModel, local_model: lk.ImageSimilarityModel) -> None:
    assert ray_model.references["path"].tolist() == local_model.references["path"].tolist()
    np.testing.assert_allclose(ray_model.embeddings, local_model.embeddings, rtol=0, atol=1e-5)
    ours = ray_model.similarity_graph(k=5, output_type="table")
    theirs = local_model.similarity_graph(k=5, output_type="table")
    pd.testing.assert_frame_equal(ours[["__src_id", "__dst_id", "rank"]], theirs[["__src_id", "__dst_id", "rank"]])


# ---------------------------------------------------------------------------------------- answers


def test_object_store_uris_give_the_local_engines_neighbours(cluster, sample_model, tmp_path, bad_files):
    """A ``file://`` prefix is listed and read through pyarrow.fs, as s3:// would be; saved model = local model.

    Broken files among the inputs are failures with a reason, never a crash of the job.
    """
    broken = sorted(str(p) for p in bad_files.values())
    model = lk.create([f"file://{SAMPLES}", *broken], engine="ray", verbose=False, cache=False)
    assert model.build_stats == {"embedded": 80, "from_cache": 0, "from_shards": 0, "failed": len(broken)}
    assert sorted(model.failures["source"]) == broken and model.failures["reason"].str.len().min() > 0
    model.save(tmp_path / "ray.lookalike")
    loaded = lk.load_model(tmp_path / "ray.lookalike")
    assert [p.removeprefix("file://") for p in loaded.references["path"]] == sample_model.references["path"].tolist()
    np.testing.assert_allclose(loaded.embeddings, sample_model.embeddings, rtol=0, atol=1e-5)
    ours = loaded.query(sample_model.embeddings[:20], k=5)
    theirs = sample_model.query(sample_model.embeddings[:20], k=5)
    pd.testing.assert_frame_equal(
        ours[["query_label", "reference_label", "rank"]], theirs[["query_label", "reference_label", "rank"]]
    )
    assert list(loaded.references[["width", "height", "format"]].itertuples(index=False)) == list(
        sample_model.references[["width", "height", "format"]].itertuples(index=False)
    )
    assert not (lk.config.cache_dir() / "ray-jobs").exists() or not any((lk.config.cache_dir() / "ray-jobs").iterdir())


@pytest.mark.needs_shared
def test_cli_on_a_running_cluster_matches_the_local_engine(cluster, tmp_path):
    """``lookalike index GLOB -o OUT --engine ray --address ...`` in another process, on real near-duplicate photos."""
    from conftest import SHARED_DATA

    pattern = str(SHARED_DATA / "neardup" / "0[0-3]?")  # 20 groups of 4 near-duplicates
    out = tmp_path / "neardup.lookalike"
    done = subprocess.run(
        [sys.executable, "-m", "lookalike.cli", "index", pattern, "-o", str(out), "--engine", "ray",
         "--address", cluster, "--json", "-q"],
        capture_output=True, text=True, timeout=JOB_TIMEOUT, env=os.environ,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"embedded": 80' in done.stdout
    local = lk.create(pattern, verbose=False, cache=False)
    assert_same_neighbours(lk.load_model(out), local)


# ----------------------------------------------------------------------------------------- faults


def test_a_killed_actor_is_restarted_and_every_image_embedded_once(cluster, tmp_path):
    files = copies(tmp_path / "photos", 2)  # 160 files
    work = tmp_path / "work"
    result: dict = {}

    def job() -> None:
        try:
            result["done"] = embed_on_ray(
                get_spec("squeezenet_v1.1"), [str(f) for f in files], batch_size=8, verbose=False,
                cache=False, work_dir=work, keep_shards=True,
            )  # fmt: skip
        except BaseException as exc:  # reported by the main thread
            result["error"] = exc

    runner = threading.Thread(target=job, daemon=True)
    runner.start()
    wait_for(lambda: len(shard_rows(work)) > 0 or not runner.is_alive(), JOB_TIMEOUT, "the first shard")
    victims = actor_pids()
    rows_before = len(shard_rows(work))
    assert runner.is_alive() and victims and rows_before < len(files), "the job ended before a worker could be killed"
    os.kill(victims[0], signal.SIGKILL)
    runner.join(JOB_TIMEOUT)
    assert not runner.is_alive(), "the job did not finish after its actor was killed"
    assert "error" not in result, result.get("error")
    assert not is_running(victims[0])
    rows = shard_rows(work)
    assert sorted(rows["id"]) == list(range(len(files)))  # every image exactly once across all shards
    assert rows["reason"].isna().all()
    done = result["done"]
    assert done.positions.tolist() == list(range(len(files))) and done.vectors.shape == (len(files), 512)
    # both copies of a photo have one embedding, whichever actor (or restarted actor) made it
    np.testing.assert_allclose(done.vectors[:80], done.vectors[80:], rtol=0, atol=1e-5)


def test_a_rerun_after_a_driver_crash_resumes_from_the_shards(cluster, tmp_path, sample_model):
    files = copies(tmp_path / "photos", 2)
    work = tmp_path / "work"
    out = tmp_path / "out.lookalike"
    driver = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", "index", str(tmp_path / "photos"), "-o", str(out), "--engine", "ray",
         "--address", cluster, "--work-dir", str(work), "--batch-size", "8", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ,
    )  # fmt: skip
    try:
        wait_for(lambda: len(shard_rows(work)) > 0 or driver.poll() is not None, JOB_TIMEOUT, "the first shard")
        assert driver.poll() is None, f"the driver ended before it could be killed: {driver.stderr.read()[-2000:]}"
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait(30)
    # A batch already running on the cluster when its driver dies may still write its shard (Ray tears the dead
    # driver's actors down after a moment): the rerun resumes from what the shards hold once they stop changing.
    written = settled_ids(work)
    assert 0 < len(written) < len(files)
    assert not out.exists()
    model = lk.create(str(tmp_path / "photos"), engine=RayEngine(work_dir=work), verbose=False, cache=False)
    assert model.build_stats["from_shards"] == len(written)
    assert model.build_stats["embedded"] == len(files) - len(written)
    assert model.references["path"].tolist() == [str(f) for f in sorted(files)]  # each once, in the local order
    # each copy's embedding is its original's, as the local engine made it (the sample model)
    originals = {
        Path(p).relative_to(SAMPLES).as_posix(): v
        for p, v in zip(sample_model.references["path"], sample_model.embeddings, strict=True)
    }
    expected = np.stack(
        [
            originals[Path(p).relative_to(tmp_path / "photos").as_posix().split("/", 1)[1]]
            for p in model.references["path"]
        ]
    )
    np.testing.assert_allclose(model.embeddings, expected, rtol=0, atol=1e-5)
    assert not work.exists()  # shards are removed once the model is built


# ------------------------------------------------------------------------------- inputs and shards


def test_bad_engine_and_sources_say_why(tmp_path):
    with pytest.raises(ValueError, match="engine must be 'local' or 'ray'"):
        lk.create(SAMPLES, engine="spark")
    with pytest.raises(TypeError, match="engine='ray' embeds image files"):
        embed_on_ray(get_spec("squeezenet_v1.1"), [b"\xff\xd8 not a path"], work_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="no such object or prefix"):
        list_inputs(f"file://{tmp_path}/missing")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match="no images under"):
        list_inputs([f"file://{tmp_path}/notes"])
    assert list_inputs([str(SAMPLES)]) == [str(SAMPLES)]  # folders are ingest's job, unchanged here


def test_half_written_shards_are_skipped_and_duplicates_kept_once(tmp_path):
    dim = 4
    folder = tmp_path / "shards"
    folder.mkdir()

    def shard(ids: list[int]) -> pa.Table:
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.repeat(np.float32(ids), dim)), dim)
        n = len(ids)
        return pa.Table.from_arrays(
            [pa.array(ids, pa.int64()), pa.array([f"{i}.jpg" for i in ids]), vectors, pa.nulls(n, pa.string()),
             pa.nulls(n, pa.string()), pa.array([1] * n, pa.int32()), pa.array([1] * n, pa.int32()),
             pa.array(["JPEG"] * n),
             *(pa.nulls(n, field.type) for field in schema(dim) if field.name in PIXEL_FACTS)],  # facts not known
            schema=schema(dim),
        )  # fmt: skip

    pq.write_table(shard([0, 1]), folder / "a.parquet")
    pq.write_table(shard([1, 2]), folder / "b.parquet")  # a retried write: id 1 twice
    pq.write_table(shard([3, 4]), folder / "c.parquet")
    data = (folder / "c.parquet").read_bytes()
    (folder / "c.parquet").write_bytes(data[: len(data) // 2])  # the crash cut it short
    store, root = filesystem(tmp_path)
    table = read_shards(store, f"{root}/shards", dim)
    assert table["id"].to_pylist() == [0, 1, 2]
    assert read_shards(store, f"{root}/nothing-yet", dim).num_rows == 0
