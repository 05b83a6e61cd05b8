"""Shared fixtures: where the real photos are, a session model on the vendored samples, odd and bad images.

Every image used by the tests is either a real photo (``samples/clothing`` in
the repo, ``../shared/data`` beside it) or generated here with Pillow/numpy.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import io
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
import threading
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageFile

import lookalike as lk

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "clothing"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_REASON = "needs ../shared/data (real photo sets); present in CI"
NOBODY = 65534  # the uid of Debian's "nobody"
CLASSES = sorted(p.name for p in SAMPLES.iterdir() if p.is_dir())
#: Length of the default network's embeddings (efficientnet_lite0: 1280).
DEFAULT_DIM = lk.embed.registry.get_spec(lk.embed.registry.DEFAULT_MODEL).dim


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_shared() -> Path:
    """SHARED_DATA, or skip (locally) / fail (in CI, where the data must be present)."""
    if (SHARED_DATA / "imagenet-sample").is_dir() and (SHARED_DATA / "neardup").is_dir():
        return SHARED_DATA
    if _in_ci():
        pytest.fail(f"CI is set but {SHARED_DATA} is missing: tests that need the shared photo sets must run in CI")
    pytest.skip(SHARED_REASON)


def pytest_configure(config):
    config.addinivalue_line("markers", f"needs_shared: {SHARED_REASON}")


def pytest_runtest_setup(item):
    if item.get_closest_marker("needs_shared") is not None:
        require_shared()


@pytest.fixture
def needs_shared() -> Path:
    """The shared data folder; skips the test when absent (fails in CI)."""
    return require_shared()


@pytest.fixture(scope="session", autouse=True)
def lookalike_cache(tmp_path_factory):
    """A fresh cache folder per session (so embeddings are really computed), never the user's own.

    Its ``models/`` sub-folder links to one kept beside pytest's numbered temp
    folders, so the ONNX conversion of SqueezeNet happens once, not every session.
    (``config.cache_dir()`` reads ``$LOOKALIKE_CACHE`` at each call.)
    """
    models = tmp_path_factory.getbasetemp().parent / "lookalike-models"
    models.mkdir(parents=True, exist_ok=True)
    cache = tmp_path_factory.mktemp("lookalike-cache", numbered=False)
    (cache / "models").symlink_to(models, target_is_directory=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOOKALIKE_CACHE", str(cache))
        yield cache


@pytest.fixture(autouse=True)
def _reset_gpu_setting():
    """Tests that change config.set_num_gpus must not leak the setting into others."""
    before = lk.config.get_num_gpus()
    yield
    lk.config.set_num_gpus(before)


@pytest.fixture(scope="session")
def sample_refs():
    """load_images on the 80 vendored photos (10 classes x 8)."""
    return lk.load_images(SAMPLES)


@pytest.fixture(scope="session")
def sample_model(lookalike_cache):
    """The default model (SqueezeNet, euclidean) on the 80 vendored photos, built once."""
    return lk.create(SAMPLES, verbose=False)


@pytest.fixture(scope="session")
def sample_classes(sample_model):
    """The class (sub-folder name) of each reference of ``sample_model``, in reference order."""
    return np.array([Path(p).parent.name for p in sample_model.references["path"]])


# ---------------------------------------------------------------------------- saved models
# Read from the format as docs/faults.md describes it, not through lookalike.store.storage: a second reading of the format.


def generation(model: Path) -> Path:
    """The folder holding a saved model's files: the generation its CURRENT names."""
    return Path(model) / json.loads((Path(model) / "CURRENT").read_text())["generation"]


def manifest_of(model: Path) -> dict:
    return json.loads((generation(model) / "manifest.json").read_text())


def reseal(model: Path) -> None:
    """Record the files of a saved model as they are now, as a writer that damaged them would have.

    A test that damages a file and reseals gets past the checksums to the
    checks behind them (shapes, types, the manifest's entries).
    """
    folder = generation(model)
    try:
        manifest = json.loads((folder / "manifest.json").read_bytes())
    except (ValueError, RecursionError):
        manifest = None
    if isinstance(manifest, dict) and isinstance(manifest.get("checksums"), dict):
        block = manifest["checksums"]["block_bytes"]
        for name, record in manifest["checksums"]["files"].items():
            if (folder / name).is_file():
                data = (folder / name).read_bytes()
                record["bytes"] = len(data)
                record["blocks"] = [
                    hashlib.sha256(data[i : i + block]).hexdigest() for i in range(0, len(data) or 1, block)
                ]
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    repoint(model)


def repoint(model: Path) -> None:
    """Record the manifest of a saved model as it is now in its CURRENT (the files' checksums stay as they are)."""
    folder = generation(model)
    digest = hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    (Path(model) / "CURRENT").write_text(json.dumps({"generation": folder.name, "manifest_sha256": digest}))


def edit_manifest(model: Path, **changes) -> None:
    """Change entries of a saved model's manifest (and reseal it)."""
    manifest = manifest_of(model)
    manifest.update(changes)
    (generation(model) / "manifest.json").write_text(json.dumps(manifest))
    reseal(model)


# ---------------------------------------------------------------------------- image generators


def pattern_rgb(width: int = 120, height: int = 80) -> Image.Image:
    """An asymmetric RGB test card of flat blocks (survives JPEG well; every rotation looks different)."""
    array = np.zeros((height, width, 3), np.uint8)
    array[:, : width // 2] = (220, 30, 30)  # left half red
    array[:, width // 2 :] = (30, 30, 220)  # right half blue
    array[: height // 4, :] = (30, 200, 30)  # top band green
    array[height // 2 :, : width // 4] = (240, 240, 40)  # bottom-left yellow
    return Image.fromarray(array, "RGB")


def noise_rgb(width: int = 300, height: int = 200, seed: int = 0) -> Image.Image:
    """Random pixels: a JPEG of it is large, so half of it is clearly truncated."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def write_jpeg(path: Path, image: Image.Image | None = None, **save_kw) -> Path:
    (image or noise_rgb()).save(path, "JPEG", quality=save_kw.pop("quality", 90), **save_kw)
    return path


def write_zero_byte(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def write_truncated_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    noise_rgb().save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_text_as_jpg(path: Path) -> Path:
    path.write_text("this is a text file, not a photo\n" * 20)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _rgb_png(width: int, height: int, compressed_rows: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", compressed_rows)
        + _png_chunk(b"IEND", b"")
    )


def write_png_header_bomb(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A tiny valid PNG whose IHDR declares ``width`` x ``height`` RGB pixels (Pillow reads only the header)."""
    path.write_bytes(_rgb_png(width, height, zlib.compress(b"\x00" * 16)))
    return path


def flat_png(width: int, height: int) -> bytes:
    """A complete grey RGB PNG: it decodes to all ``width`` x ``height`` pixels from ~1/1000 of their size (40 MP: 120 KB)."""
    rows = zlib.compressobj(9)
    row = b"\x00" + b"\x80" * (3 * width)  # filter byte "none", then the row's pixels
    return _rgb_png(width, height, b"".join(rows.compress(row) for _ in range(height)) + rows.flush())


def write_exif_rotated_jpeg(path: Path, image: Image.Image, orientation: int = 6) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    image.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


def copy_sample(dst: Path, index: int = 0) -> Path:
    """Copy the ``index``-th vendored sample photo to ``dst``."""
    src = sorted(SAMPLES.rglob("*.jpg"))[index]
    shutil.copyfile(src, dst)
    return dst


@pytest.fixture
def imagegen():
    """The image generators above, for tests that build their own files."""
    return SimpleNamespace(
        pattern_rgb=pattern_rgb,
        noise_rgb=noise_rgb,
        write_jpeg=write_jpeg,
        write_zero_byte=write_zero_byte,
        write_truncated_jpeg=write_truncated_jpeg,
        write_text_as_jpg=write_text_as_jpg,
        write_png_header_bomb=write_png_header_bomb,
        write_exif_rotated_jpeg=write_exif_rotated_jpeg,
        copy_sample=copy_sample,
        unreadable=unreadable,
    )


@pytest.fixture
def bad_files(tmp_path) -> dict[str, Path]:
    """One file of each kind of bad image, in their own folder: name -> path."""
    folder = tmp_path / "bad"
    folder.mkdir()
    return {
        "zero": write_zero_byte(folder / "zero.jpg"),
        "truncated": write_truncated_jpeg(folder / "truncated.jpg"),
        "text": write_text_as_jpg(folder / "text.jpg"),
        "bomb": write_png_header_bomb(folder / "bomb.png"),
    }


@contextlib.contextmanager
def unreadable(path: Path):
    """Make ``path`` unreadable (chmod 000) for the duration of the block.

    Root ignores file modes, so as root the block also runs with the
    effective uid of ``nobody`` (the folders above ``path`` made traversable
    meanwhile): the permission error is then as real as for any user.
    """
    path.chmod(0)
    relaxed: list[tuple[Path, int]] = []
    groups = os.getgroups()
    try:
        if os.geteuid() == 0:
            for folder in path.parents:  # traversable, and the file's own folder listable
                mode = folder.stat().st_mode & 0o7777
                wanted = mode | (0o005 if folder == path.parent else 0o001)
                if wanted != mode:
                    relaxed.append((folder, mode))
                    folder.chmod(wanted)
            # Group bits beat "other" bits for a member of the file's group: drop root's groups too.
            os.setgroups([])
            os.setegid(NOBODY)
            os.seteuid(NOBODY)
        assert not os.access(path, os.R_OK, effective_ids=True), f"{path} is still readable"
        yield path
    finally:
        if os.geteuid() != os.getuid():
            os.seteuid(os.getuid())
            os.setegid(os.getgid())
            os.setgroups(groups)
        for folder, mode in relaxed:
            folder.chmod(mode)
        path.chmod(0o644)


def on_small_tmpfs(disk: Path, size: str = "8m") -> list[str]:
    """The command prefix running a command with a fresh tmpfs of ``size`` on ``disk`` (a real disk that fills up), in
    a private mount namespace (``unshare --mount --map-root-user``); skips the test where that is not allowed."""
    mount = [
        "unshare",
        "--mount",
        "--map-root-user",
        "sh",
        "-c",
        f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"',
    ]
    if shutil.which("unshare") is None:
        pytest.skip("cannot mount a small tmpfs here: no unshare")
    probe = subprocess.run([*mount, str(disk), "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {probe.stderr.strip()}")
    return [*mount, str(disk)]


def without_root_reads() -> None:
    """In a child process (``preexec_fn``): drop the capabilities that let root read and write any file or folder,
    so that permissions apply to it, and to what it runs, as to any user."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, from the bounding set: gone after exec
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


class DecodingForbidden(AssertionError):
    """Raised by ``forbid_decoding`` when something tries to decode pixels."""


@pytest.fixture
def forbid_decoding(monkeypatch):
    """Make any pixel decoding (``Image.load`` of a file or an in-memory image) raise DecodingForbidden."""

    def refuse(self, *args, **kwargs):
        raise DecodingForbidden(f"pixels of {getattr(self, 'filename', '') or self!r} were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(Image.Image, "load", refuse)
    return DecodingForbidden


def on_a_terminal(args: list[str]) -> str:
    """What the CLI writes to its standard error when that is a terminal."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new terminal has no columns
    written: list[bytes] = []

    def drain() -> None:  # a full terminal buffer would block the command
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the command's end of the terminal closed
                return
            if not chunk:
                return
            written.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "lookalike.cli", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=secondary,
            timeout=300,
        )
    finally:
        os.close(secondary)
    reader.join(timeout=10)
    os.close(primary)
    assert done.returncode == 0
    return b"".join(written).decode(errors="replace")
