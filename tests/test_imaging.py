"""Tests of mmstudio.imaging: the safe image loader, file listing and content keys."""

from __future__ import annotations

import io
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

if str(Path(__file__).parent) not in sys.path:  # image_corpus is a helper beside this file
    sys.path.insert(0, str(Path(__file__).parent))

from image_corpus import (  # noqa: E402
    RED,
    WEBP_BOMB_HEX,
    corner_image,
    encode,
    make_corpus,
    noise,
    small_samples,
)

from mmstudio.errors import ImageLoadError  # noqa: E402
from mmstudio.imaging import (  # noqa: E402
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    content_key,
    iter_image_files,
    load_image,
)


def _case_names() -> list[str]:
    with tempfile.TemporaryDirectory() as folder:
        return [case.name for case in make_corpus(Path(folder))]


CASE_NAMES = _case_names()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return {case.name: case for case in make_corpus(tmp_path_factory.mktemp("corpus"))}


def assert_color(actual, expected, tolerance):
    assert all(abs(a - e) <= tolerance for a, e in zip(actual, expected)), (actual, expected)


# ---------------------------------------------------------------- the corpus


def test_corpus_is_big_enough(corpus):
    assert len(corpus) >= 24
    assert sum(case.ok for case in corpus.values()) >= 12
    assert sum(not case.ok for case in corpus.values()) >= 12


@pytest.mark.parametrize("name", CASE_NAMES)
def test_corpus_case_from_path(corpus, name):
    case = corpus[name]
    if case.ok:
        image = load_image(case.path)
        assert image.mode == "RGB"
        assert image.size == case.size
        assert_color(image.getpixel(case.probe), case.color, case.tolerance)
    else:
        with pytest.raises(ImageLoadError) as caught:
            load_image(case.path)
        assert case.path.name in str(caught.value)
        assert caught.value.path == str(case.path)
        if case.reason:
            assert case.reason in caught.value.reason


@pytest.mark.parametrize("name", CASE_NAMES)
def test_corpus_case_from_bytes(corpus, name):
    case = corpus[name]
    if case.path.is_dir():
        return
    data = case.path.read_bytes()
    if case.ok:
        image = load_image(data)
        assert image.mode == "RGB"
        assert image.size == case.size
        assert_color(image.getpixel(case.probe), case.color, case.tolerance)
    else:
        with pytest.raises(ImageLoadError) as caught:
            load_image(data)
        assert str(caught.value).startswith("<bytes>: ")
        with pytest.raises(ImageLoadError) as caught:
            load_image(data, name="upload #3")
        assert str(caught.value).startswith("upload #3: ")


def test_loaded_images_are_detached_and_no_file_stays_open(corpus):
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.exists():
        pytest.skip("needs /proc")
    before = len(list(fd_dir.iterdir()))
    images = []
    for case in corpus.values():
        try:
            images.append(load_image(case.path))
        except ImageLoadError:
            pass
    assert len(list(fd_dir.iterdir())) == before
    for image in images:
        assert not isinstance(image, ImageFile.ImageFile)
        assert getattr(image, "fp", None) is None


def test_pillow_globals_and_warning_filters_are_left_alone(corpus):
    max_pixels = Image.MAX_IMAGE_PIXELS
    truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    filters = list(warnings.filters)
    for case in corpus.values():
        try:
            load_image(case.path)
        except ImageLoadError:
            pass
    assert Image.MAX_IMAGE_PIXELS == max_pixels
    assert ImageFile.LOAD_TRUNCATED_IMAGES is truncated is False
    assert warnings.filters == filters


def test_warnings_as_errors_change_nothing(corpus):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for case in corpus.values():
            if case.ok:
                assert load_image(case.path).size == case.size
            else:
                with pytest.raises(ImageLoadError) as caught:
                    load_image(case.path)
                if case.reason:
                    assert case.reason in caught.value.reason


# ---------------------------------------------------------------- orientation, modes


# What a viewer shows for each EXIF orientation, from the stored (rows, cols) array.
ORIENTED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, k=1),
}


@pytest.mark.parametrize("orientation", sorted(ORIENTED))
def test_every_exif_orientation(orientation):
    stored = noise(5, 3, seed=orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = load_image(encode(stored, "PNG", exif=exif.tobytes()))
    expected = ORIENTED[orientation](np.asarray(stored))
    assert np.array_equal(np.asarray(image), expected)


def test_orientation_also_from_tiff_tags():
    stored = noise(5, 3, seed=1)
    exif = Image.Exif()
    exif[0x0112] = 6
    image = load_image(encode(stored, "TIFF", exif=exif))
    assert np.array_equal(np.asarray(image), np.rot90(np.asarray(stored), k=-1))


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("I;16", 32896, (128, 128, 128)),
        ("I;16", 257, (1, 1, 1)),
        ("I;16B", 32896, (128, 128, 128)),
        ("I", 65535, (255, 255, 255)),
        ("I", -40, (0, 0, 0)),
        ("F", 127.6, (128, 128, 128)),
        ("F", float("nan"), (0, 0, 0)),
        ("F", 1e9, (255, 255, 255)),
        ("L", 9, (9, 9, 9)),
        ("1", 1, (255, 255, 255)),
        ("CMYK", (255, 0, 0, 0), (0, 255, 255)),
        ("CMYK", (0, 0, 0, 255), (0, 0, 0)),
        ("YCbCr", (255, 128, 128), (255, 255, 255)),
        ("LA", (10, 0), (255, 255, 255)),
        ("PA", (0, 255), (0, 0, 0)),
        ("RGBA", (0, 0, 255, 0), (255, 255, 255)),
        ("RGBA", (0, 0, 255, 255), (0, 0, 255)),
    ],
)
def test_mode_conversion(mode, value, expected):
    # TIFF stores every one of these modes as it is.
    data = encode(Image.new(mode, (3, 2), value), "TIFF")
    with Image.open(io.BytesIO(data)) as reread:
        assert reread.mode == mode
    image = load_image(data)
    assert image.mode == "RGB"
    assert_color(image.getpixel((1, 1)), expected, 1)


def test_p_mode_with_rgba_palette_is_flattened_on_white():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 255, 0, 0] * 256, "RGBA")
    assert load_image(encode(image, "PNG")).getpixel((1, 1)) == (255, 255, 255)


# ---------------------------------------------------------------- pixel budget


def test_small_budget_refuses_a_normal_image(corpus):
    path = corpus["rgb.png"].path
    with pytest.raises(ImageLoadError) as caught:
        load_image(path, max_pixels=1000)
    assert "48x32" in caught.value.reason
    assert "1000 pixel limit" in caught.value.reason
    assert load_image(path, max_pixels=48 * 32).size == (48, 32)


def test_budget_is_checked_before_decoding(corpus):
    # The pixel data of this file is cut: only the header could have been read.
    with pytest.raises(ImageLoadError) as caught:
        load_image(corpus["truncated.png"].path, max_pixels=100)
    assert "64x64 pixels, more than the 100 pixel limit" in caught.value.reason


def test_default_budget():
    assert DEFAULT_MAX_PIXELS == 50_000_000
    with pytest.raises(ImageLoadError, match="10000x10000 pixels, more than the 50 megapixel limit"):
        load_image(bytes.fromhex(WEBP_BOMB_HEX))


def test_pillow_bomb_limits_become_image_load_errors(corpus, monkeypatch):
    path = corpus["rgb.png"].path  # 1536 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # Pillow raises above 1000
    with pytest.raises(ImageLoadError) as caught:
        load_image(path)
    assert "1536 pixels" in caught.value.reason and "limit" in caught.value.reason
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow only warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path).size == (48, 32)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert load_image(path).size == (48, 32)
    with pytest.raises(ImageLoadError, match="megapixel limit"):
        load_image(corpus["huge-40000x40000.png"].path)


# ---------------------------------------------------------------- files and folders


def test_missing_file_and_missing_folder(tmp_path):
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "a.png").write_bytes(encode(corner_image(), "PNG"))
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "a.png" / "b.png")


def test_folder_is_named_as_such(tmp_path):
    with pytest.raises(ImageLoadError) as caught:
        load_image(tmp_path)
    assert caught.value.reason == "is a folder, not a file"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_image(fifo)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_permission_denied(tmp_path):
    path = tmp_path / "secret.png"
    path.write_bytes(encode(corner_image(), "PNG"))
    path.chmod(0)
    try:
        with pytest.raises(ImageLoadError, match="permission denied"):
            load_image(path)
    finally:
        path.chmod(0o644)


def test_odd_sources():
    with pytest.raises(ImageLoadError, match="<bytes>: image data is empty"):
        load_image(b"")
    with pytest.raises(ImageLoadError):
        load_image("bad\0path.png")
    data = encode(corner_image(), "PNG")
    assert load_image(bytearray(data)).size == (48, 32)
    assert load_image(memoryview(data)).size == (48, 32)
    with pytest.raises(TypeError):
        load_image(12)  # type: ignore[arg-type]


def test_image_extensions():
    assert IMAGE_EXTENSIONS == {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS)


def test_iter_image_files(tmp_path):
    root = tmp_path / "photos"
    for relative in [
        "b.png",
        "A.jpg",
        "c.txt",
        "notes.md",
        ".hidden.png",
        "sub/z.webp",
        "sub/a.GIF",
        "sub/deeper/m.TIFF",
        "sub/.cache/y.png",
        ".git/x.png",
    ]:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (root / "folder.png").mkdir()  # a folder with an image suffix is searched

    in_folder = [
        root / "A.jpg",
        root / "b.png",
        root / "sub" / "a.GIF",
        root / "sub" / "deeper" / "m.TIFF",
        root / "sub" / "z.webp",
    ]
    assert iter_image_files([root]) == in_folder
    assert iter_image_files(root) == in_folder
    assert iter_image_files(str(root)) == in_folder

    missing = tmp_path / "gone.png"
    explicit = iter_image_files([root / "c.txt", root / ".hidden.png", root, str(root / "b.png"), missing])
    assert explicit == [root / "c.txt", root / ".hidden.png", *in_folder, missing]
    assert all(isinstance(path, Path) for path in explicit)
    assert iter_image_files([]) == []


# ---------------------------------------------------------------- content keys


def test_content_key():
    image = noise(7, 5, seed=3)
    key = content_key(image)
    assert len(key) == 32 and int(key, 16) >= 0
    assert content_key(image.copy()) == key
    assert content_key(load_image(encode(image, "PNG"))) == key

    changed = image.copy()
    r, g, b = changed.getpixel((6, 4))
    changed.putpixel((6, 4), (r ^ 1, g, b))
    assert content_key(changed) != key

    flat = Image.frombytes("RGB", (5, 7), image.tobytes())  # same bytes, other shape
    assert content_key(flat) != key
    assert content_key(Image.new("L", (3, 1), 0)) != content_key(Image.new("RGB", (1, 1), 0))

    palette_a = Image.new("P", (2, 2), 0)
    palette_b = palette_a.copy()
    palette_b.putpalette([9, 9, 9] * 256)
    assert content_key(palette_a) != content_key(palette_b)


# ---------------------------------------------------------------- mutation fuzzing

SAMPLES = small_samples()


@st.composite
def mutated_files(draw):
    data = bytearray(SAMPLES[draw(st.sampled_from(sorted(SAMPLES)))])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        # Headers are where parsers are most fragile: aim there half the time.
        at = draw(st.one_of(st.integers(0, min(63, len(data) - 1)), st.integers(0, len(data) - 1)))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255))]))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            del data[at:]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_files())
def test_mutated_files_load_or_raise_image_load_error(data):
    try:
        image = load_image(data, max_pixels=1_000_000)
    except ImageLoadError as error:
        assert str(error).startswith("<bytes>: ")
    else:
        assert image.mode == "RGB"
        assert 0 < image.width * image.height <= 1_000_000
        assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_samples_are_valid():
    for fmt, data in SAMPLES.items():
        image = load_image(data)
        assert image.size == (24, 16), fmt
        assert_color(image.getpixel((4, 4)), RED, 12)
