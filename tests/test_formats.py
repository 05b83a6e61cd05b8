"""Every common image format decodes to the right pixels, the right way up: files made here from real photos.

Each test writes a vendored photo (``samples/clothing``) in one format or
variant and compares what lookalike decodes with pixels computed
independently (numpy palette look-ups, alpha compositing, orientation
transforms), not merely "it did not raise".
"""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lookalike as lk
from conftest import SAMPLES
from lookalike.ingest.decode import FORMATS_EXTRA, load_rgb, probe

pillow_heif = pytest.importorskip("pillow_heif", reason=f"HEIC needs the formats extra: {FORMATS_EXTRA}")

PHOTOS = sorted(SAMPLES.rglob("*.jpg"))


def photo(index: int = 3, side: int = 200) -> Image.Image:
    """A vendored photo, shrunk to at most ``side`` pixels (real content, quick to encode)."""
    with Image.open(PHOTOS[index]) as image:
        image = image.convert("RGB")
        image.thumbnail((side, side))
        return image


def pixels(source) -> np.ndarray:
    return np.asarray(load_rgb(source), dtype=np.int16)


def mean_diff(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).mean())


# ---------------------------------------------------------------------------------------------------- JPEG


def test_cmyk_jpeg(tmp_path):
    rgb = photo()
    rgb.convert("CMYK").save(tmp_path / "print.jpg", quality=95)
    assert Image.open(tmp_path / "print.jpg").mode == "CMYK"
    assert mean_diff(pixels(tmp_path / "print.jpg"), rgb) < 4


def test_progressive_jpeg(tmp_path):
    rgb = photo()
    rgb.save(tmp_path / "web.jpg", quality=92, progressive=True)
    assert Image.open(tmp_path / "web.jpg").info.get("progressive")
    assert mean_diff(pixels(tmp_path / "web.jpg"), rgb) < 4


#: EXIF orientation -> how the camera stored an upright picture (the inverse of what the tag says to do).
STORED = {
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, 1),  # tag 6: "rotate 90 degrees clockwise to display"
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, -1),
}


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_exif_rotated_jpeg_comes_out_upright(tmp_path, orientation):
    upright = np.asarray(photo())  # portrait: a wrong turn changes the shape, a wrong flip the pixels
    stored = np.ascontiguousarray(STORED[orientation](upright))
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "camera.jpg", quality=95, exif=exif.tobytes())
    decoded = pixels(tmp_path / "camera.jpg")
    assert decoded.shape == upright.shape
    assert mean_diff(decoded, upright) < 4
    if stored.shape == upright.shape:
        assert mean_diff(stored, upright) > 15  # the test photo is not symmetric: ignoring the tag would fail


# ----------------------------------------------------------------------------------------------------- PNG


def test_palette_png(tmp_path):
    indexed = photo().quantize(64)
    indexed.save(tmp_path / "palette.png")
    assert Image.open(tmp_path / "palette.png").mode == "P"
    palette = np.asarray(indexed.getpalette(), dtype=np.int16).reshape(-1, 3)
    np.testing.assert_array_equal(pixels(tmp_path / "palette.png"), palette[np.asarray(indexed)])


def test_palette_png_with_a_transparent_colour_is_white_there(tmp_path):
    indexed = photo().quantize(64)
    index = np.asarray(indexed)
    clear = int(np.bincount(index.ravel()).argmax())  # the most common colour becomes transparent
    indexed.save(tmp_path / "clear.png", transparency=clear)
    palette = np.asarray(indexed.getpalette(), dtype=np.int16).reshape(-1, 3)
    expected = palette[index]
    expected[index == clear] = 255
    np.testing.assert_array_equal(pixels(tmp_path / "clear.png"), expected)


def test_alpha_png_is_composited_on_white(tmp_path):
    rgb = np.asarray(photo(), dtype=np.float32)
    alpha = np.linspace(0, 255, rgb.shape[1], dtype=np.float32).round()[None, :].repeat(rgb.shape[0], axis=0)
    rgba = np.dstack([rgb, alpha]).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    expected = rgb * (alpha[..., None] / 255) + 255 * (1 - alpha[..., None] / 255)
    assert np.abs(pixels(tmp_path / "alpha.png") - expected).max() <= 1


def test_16_bit_grayscale_png(tmp_path):
    gray = np.asarray(photo().convert("L"))
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "scan16.png")  # 0..255 -> 0..65535
    assert Image.open(tmp_path / "scan16.png").mode == "I;16"
    decoded = pixels(tmp_path / "scan16.png")
    assert np.abs(decoded - gray[..., None]).max() <= 1  # scaled, not clipped to white


def _png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB), filter 0 on every row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_16_bit_rgb_png(tmp_path):
    rgb = np.asarray(photo())
    samples = (rgb.astype(">u2") * 257).astype(">u2")  # a 48-bit scanner PNG, big-endian samples
    rows = b"".join(b"\x00" + row.tobytes() for row in samples)
    (tmp_path / "scan48.png").write_bytes(_png(rgb.shape[1], rgb.shape[0], 16, 2, rows))
    assert np.abs(pixels(tmp_path / "scan48.png") - rgb).max() <= 1


# -------------------------------------------------------------------------------------- WebP, GIF, BMP, TIFF


def test_webp_lossless_and_lossy(tmp_path):
    rgb = photo()
    rgb.save(tmp_path / "exact.webp", lossless=True)
    rgb.save(tmp_path / "small.webp", quality=90)
    np.testing.assert_array_equal(pixels(tmp_path / "exact.webp"), np.asarray(rgb))
    assert mean_diff(pixels(tmp_path / "small.webp"), rgb) < 5
    assert probe(tmp_path / "small.webp").format == "WEBP"


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [photo(i).resize((150, 200)) for i in (3, 40, 70)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(tmp_path / "anim.gif").n_frames == 3
    decoded = pixels(tmp_path / "anim.gif")
    first, second = mean_diff(decoded, frames[0]), mean_diff(decoded, frames[1])
    assert first < 10  # 256 colours: close, not exact
    assert second > 3 * first


def test_bmp(tmp_path):
    rgb = photo()
    rgb.save(tmp_path / "old.bmp")
    np.testing.assert_array_equal(pixels(tmp_path / "old.bmp"), np.asarray(rgb))


def test_multipage_tiff_gives_its_first_page(tmp_path):
    pages = [photo(3), photo(40, side=120)]
    pages[0].save(tmp_path / "scan.tif", save_all=True, append_images=pages[1:], compression="tiff_lzw")
    assert Image.open(tmp_path / "scan.tif").n_frames == 2
    np.testing.assert_array_equal(pixels(tmp_path / "scan.tif"), np.asarray(pages[0]))


# ------------------------------------------------------------------------------ HEIC and AVIF (formats extra)


def test_heic(tmp_path):
    rgb = photo()
    pillow_heif.from_pillow(rgb).save(tmp_path / "phone.heic", quality=90)
    assert (tmp_path / "phone.heic").read_bytes()[4:12] == b"ftypheic"
    assert mean_diff(pixels(tmp_path / "phone.heic"), rgb) < 5
    assert probe(tmp_path / "phone.heic").format == "HEIF"


def test_heic_taken_sideways_is_turned_upright_once(tmp_path):
    upright = np.asarray(photo())
    exif = Image.Exif()
    exif[0x0112] = 6  # as a phone held sideways tags it; the HEIF container gets an irot box too
    sideways = pillow_heif.from_pillow(Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))))
    sideways.save(tmp_path / "sideways.heic", quality=90, exif=exif.tobytes())
    decoded = pixels(tmp_path / "sideways.heic")
    assert decoded.shape == upright.shape  # turned once: twice would be upside down, never would be sideways
    assert mean_diff(decoded, upright) < 5
    assert mean_diff(decoded, np.rot90(upright, 2)) > 15


def test_avif(tmp_path):
    rgb = photo()
    rgb.save(tmp_path / "web.avif", quality=90)
    assert (tmp_path / "web.avif").read_bytes()[4:12] == b"ftypavif"
    assert mean_diff(pixels(tmp_path / "web.avif"), rgb) < 5


def test_without_the_formats_extra_heic_and_avif_name_it(tmp_path):
    photo().save(tmp_path / "ok.jpg")
    pillow_heif.from_pillow(photo()).save(tmp_path / "phone.heic")
    photo().save(tmp_path / "web.avif")
    # A fresh interpreter where pillow-heif and Pillow's AVIF plugin cannot be imported, as without the extra.
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["pillow_heif"] = None
        sys.modules["PIL.AvifImagePlugin"] = None
        from lookalike.ingest.decode import ImageError, load_rgb
        print(load_rgb({str(tmp_path / "ok.jpg")!r}).size)
        for name in ("phone.heic", "web.avif"):
            try:
                load_rgb({str(tmp_path)!r} + "/" + name)
            except ImageError as exc:
                print(exc.reason)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    size, heic, avif = run.stdout.strip().splitlines()
    assert size == str(photo().size)
    assert heic == "unsupported format (HEIC: needs pillow-heif; pip install 'lookalike[formats]' adds it)"
    assert avif.startswith("unsupported format (AVIF: needs a Pillow built with AVIF")
    assert avif.endswith("pip install 'lookalike[formats]' adds it)")


# -------------------------------------------------------------------------------------------- the pipeline


def write_every_format(folder: Path, image: Image.Image) -> dict[str, str]:
    """``image`` in each format lookalike reads: file name -> the format its header must report."""
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(np.asarray(image), 1))).save(
        folder / "rotated.jpg", quality=95, exif=exif.tobytes()
    )
    image.convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    image.save(folder / "progressive.jpg", quality=95, progressive=True)
    image.quantize(256).save(folder / "palette.png")
    image.convert("RGBA").save(folder / "alpha.png")
    image.save(folder / "photo.webp", quality=90)
    image.save(folder / "photo.gif")
    image.save(folder / "photo.bmp")
    image.save(folder / "photo.tif", compression="tiff_lzw")
    pillow_heif.from_pillow(image).save(folder / "photo.heic", quality=90)
    image.save(folder / "photo.avif", quality=90)
    return {
        "rotated.jpg": "JPEG",
        "cmyk.jpg": "JPEG",
        "progressive.jpg": "JPEG",
        "palette.png": "PNG",
        "alpha.png": "PNG",
        "photo.webp": "WEBP",
        "photo.gif": "GIF",
        "photo.bmp": "BMP",
        "photo.tif": "TIFF",
        "photo.heic": "HEIF",
        "photo.avif": "AVIF",
    }


def test_every_format_is_listed_indexed_and_found_as_the_same_photo(tmp_path, sample_model):
    source = PHOTOS[3]
    with Image.open(source) as image:
        formats = write_every_format(tmp_path / "formats", image.convert("RGB"))
    listed = lk.load_images(tmp_path / "formats")
    assert listed.attrs["failures"] == []
    assert dict(zip(listed["path"].map(lambda p: Path(p).name), listed["format"], strict=True)) == formats

    # Each copy, whatever its format, is nearest to the original photo among the 80 references.
    results = sample_model.query(listed, label="path", k=1, verbose=False)
    assert len(results) == len(formats)
    nearest = sample_model.references.set_index(sample_model.labels)["path"].reindex(results["reference_label"])
    assert set(nearest) == {str(source)}
