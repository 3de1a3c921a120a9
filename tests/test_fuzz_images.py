"""Fuzzing the one image loader with mutated PNG, JPEG, GIF and TIFF files and with non-image bytes.

Whatever the bytes, `load_image` (what the app, the CLI and the inference worker call)
returns a fully loaded RGB image of a sane size or raises ImageLoadError; nothing else
escapes. A header that claims a huge picture is refused as too large before pixels are
allocated. Every case is loaded twice, from bytes (a paste) and from a file (a drop),
and both must agree. derandomize=True: CI runs the same cases, and a failure reproduces.
"""

from __future__ import annotations

import io
import resource
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mmstudio.errors import ImageLoadError
from mmstudio.imaging import CORRUPT, NOT_AN_IMAGE, load_image

# Small enough that a header may claim anything without the test allocating much.
BUDGET = 1_000_000


def fuzz_settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- seed files


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def seed_files() -> dict[str, dict[str, bytes]]:
    """Valid little files per format, covering the decoders' main paths (modes, compressions, frames)."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
    rgba = rgb.copy()
    rgba.putalpha(Image.linear_gradient("L").resize((24, 16)))
    grey16 = Image.fromarray(rng.integers(0, 65536, (16, 24)).astype(np.uint16))
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    frames = [rgb.rotate(angle).convert("P") for angle in (0, 90, 180)]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the loader turns it upright
    return {
        "png": {
            "rgb": encode(rgb, "PNG"),
            "rgba": encode(rgba, "PNG"),
            "grey16": encode(grey16, "PNG"),
            "palette-transparency": encode(palette, "PNG", transparency=3),
            "exif": encode(rgb, "PNG", exif=exif.tobytes()),
        },
        "jpeg": {
            "baseline": encode(rgb, "JPEG", quality=80),
            "progressive": encode(rgb, "JPEG", progressive=True),
            "grey": encode(rgb.convert("L"), "JPEG"),
            "cmyk": encode(rgb.convert("CMYK"), "JPEG"),
            "exif": encode(rgb, "JPEG", exif=exif.tobytes()),
        },
        "gif": {
            "still": encode(palette, "GIF"),
            "animated": encode(frames[0], "GIF", save_all=True, append_images=frames[1:], disposal=2,
                               transparency=0, duration=50),
        },
        "tiff": {
            "raw": encode(rgb, "TIFF"),
            "lzw": encode(rgb, "TIFF", compression="tiff_lzw"),
            "deflate-rgba": encode(rgba, "TIFF", compression="tiff_adobe_deflate"),
            "jpeg": encode(rgb, "TIFF", compression="jpeg"),
            "group4": encode(rgb.convert("1"), "TIFF", compression="group4"),
            "packbits": encode(rgb.convert("L"), "TIFF", compression="packbits"),
            "grey16": encode(grey16, "TIFF"),
            "cmyk": encode(rgb.convert("CMYK"), "TIFF"),
            "pages": encode(frames[0].convert("RGB"), "TIFF", save_all=True,
                            append_images=[f.convert("L") for f in frames[1:]]),
            "exif": encode(rgb, "TIFF", exif=exif),
        },
    }


SEEDS = seed_files()


# ---------------------------------------------------------------- the property


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """One file that each case overwrites, to load it the way a dropped file is loaded."""
    return tmp_path_factory.mktemp("fuzz") / "case.img"


def load(source) -> Image.Image | ImageLoadError:
    try:
        return load_image(source, max_pixels=BUDGET)
    except ImageLoadError as error:
        return error


def check(data: bytes, scratch: Path) -> Image.Image | ImageLoadError:
    """Load `data` from bytes and from a file: a sane image or an ImageLoadError, the same both ways."""
    from_bytes = load(data)
    scratch.write_bytes(data)
    from_file = load(scratch)
    if isinstance(from_bytes, ImageLoadError):
        assert from_bytes.path == "<bytes>" and from_bytes.reason
        assert isinstance(from_file, ImageLoadError), f"bytes refused ({from_bytes.reason}), the file loaded"
        assert from_file.path == str(scratch)
        if data:  # an empty file and empty bytes are told apart in words
            assert from_file.reason == from_bytes.reason
        return from_bytes
    assert_sane(from_bytes)
    assert isinstance(from_file, Image.Image), f"bytes loaded, the file was refused ({from_file.reason})"
    assert from_file.size == from_bytes.size and from_file.tobytes() == from_bytes.tobytes()
    return from_bytes


def assert_sane(image: Image.Image) -> None:
    assert type(image) is Image.Image  # detached from the decoder and its file
    assert image.mode == "RGB"
    width, height = image.size
    assert width >= 1 and height >= 1 and width * height <= BUDGET
    assert len(image.tobytes()) == width * height * 3


# ---------------------------------------------------------------- byte mutations


@st.composite
def mutated(draw, fmt: str) -> bytes:
    variants = SEEDS[fmt]
    data = bytearray(variants[draw(st.sampled_from(sorted(variants)))])
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        # Parsers are most fragile in headers and tables: aim at the first 256 bytes half the time.
        at = draw(st.one_of(st.integers(0, min(255, len(data) - 1)), st.integers(0, len(data) - 1)))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01]))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[at:]
        else:  # a piece of the file again somewhere else: repeated chunks, markers, IFD entries
            start = draw(st.integers(0, len(data) - 1))
            data[at:at] = data[start:start + draw(st.integers(1, 64))]
    return bytes(data)


@fuzz_settings(800)
@given(data=mutated("png"))
def test_mutated_png(data, scratch):
    check(data, scratch)


@fuzz_settings(800)
@given(data=mutated("jpeg"))
def test_mutated_jpeg(data, scratch):
    check(data, scratch)


@fuzz_settings(500)
@given(data=mutated("gif"))
def test_mutated_gif(data, scratch):
    check(data, scratch)


@fuzz_settings(1000)
@given(data=mutated("tiff"))
def test_mutated_tiff(data, scratch):
    check(data, scratch)


# ---------------------------------------------------------------- header fields

# Sizes a corrupt header may claim: small, around 16 and 32 bit limits, and plain huge.
dimensions = st.one_of(
    st.integers(0, 300),
    st.sampled_from([1, 255, 256, 999, 1000, 1001, 4096, 32767, 32768, 65535]),
    st.integers(0, 65535),
)
wide_dimensions = st.one_of(dimensions, st.sampled_from([65536, 2**31 - 1, 2**31, 2**32 - 1]),
                            st.integers(0, 2**32 - 1))


def refused_as_too_large(outcome) -> bool:
    return isinstance(outcome, ImageLoadError) and "limit" in outcome.reason


def png_with_header(variant: str, width: int, height: int, fields: dict[int, int], fix_crc: bool) -> bytes:
    data = bytearray(SEEDS["png"][variant])
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    for offset, value in fields.items():  # bit depth, color type, compression, filter, interlace
        data[24 + offset] = value
    if fix_crc:  # else Pillow stops at the checksum, before the fields are used
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@fuzz_settings(300)
@given(
    variant=st.sampled_from(sorted(SEEDS["png"])),
    width=wide_dimensions,
    height=wide_dimensions,
    fields=st.dictionaries(st.integers(0, 4), st.integers(0, 255), max_size=2),
    fix_crc=st.booleans(),
)
def test_png_ihdr_fields(variant, width, height, fields, fix_crc, scratch):
    outcome = check(png_with_header(variant, width, height, fields, fix_crc), scratch)
    if fix_crc and not fields and width * height > BUDGET:
        assert refused_as_too_large(outcome), outcome


def jpeg_frame_header(data: bytes) -> int:
    """Offset of the SOFn marker segment of a valid JPEG."""
    at = 2
    while True:
        marker = data[at + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return at
        at += 2 + struct.unpack(">H", data[at + 2:at + 4])[0]


@fuzz_settings(300)
@given(
    variant=st.sampled_from(sorted(SEEDS["jpeg"])),
    width=dimensions,
    height=dimensions,
    # precision, component count, then the components' ids, sampling factors and tables
    fields=st.dictionaries(st.sampled_from([4, 9, 10, 11, 12, 13, 14, 15]), st.integers(0, 255), max_size=2),
)
def test_jpeg_frame_header_fields(variant, width, height, fields, scratch):
    data = bytearray(SEEDS["jpeg"][variant])
    sof = jpeg_frame_header(data)
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    for offset, value in fields.items():
        data[sof + offset] = value
    outcome = check(bytes(data), scratch)
    if not fields and width * height > BUDGET:
        assert refused_as_too_large(outcome), outcome


def gif_descriptors(data: bytes) -> list[int]:
    """Offsets of the image descriptors (",") of a valid GIF."""
    at = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    found = []
    while data[at] != 0x3B:  # trailer
        if data[at] == 0x21:  # extension: label, then sub-blocks
            at += 2
        else:
            found.append(at)
            flags = data[at + 9]
            at += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0) + 1  # + LZW code size
        while data[at]:
            at += data[at] + 1
        at += 1
    return found


@fuzz_settings(300)
@given(
    variant=st.sampled_from(sorted(SEEDS["gif"])),
    screen=st.tuples(dimensions, dimensions),
    frame=st.tuples(dimensions, dimensions, dimensions, dimensions),
    flags=st.one_of(st.none(), st.integers(0, 255)),
    code_size=st.one_of(st.none(), st.integers(0, 255)),
)
def test_gif_screen_and_frame_fields(variant, screen, frame, flags, code_size, scratch):
    data = bytearray(SEEDS["gif"][variant])
    first = gif_descriptors(data)[0]
    data[6:10] = struct.pack("<HH", *screen)
    data[first + 1:first + 9] = struct.pack("<HHHH", *frame)
    if code_size is not None:  # the LZW minimum code size (before a local palette: there is none)
        data[first + 10] = code_size
    if flags is not None:  # palette and interlace bits of the logical screen
        data[10] = flags
    outcome = check(bytes(data), scratch)
    left, top, width, height = frame
    canvas = max(screen[0], left + width) * max(screen[1], top + height)
    if flags is None and code_size is None and canvas > BUDGET:
        assert refused_as_too_large(outcome), outcome


TIFF_SIZE_TAGS = (256, 257)  # ImageWidth, ImageLength
TIFF_TAGS = (
    *TIFF_SIZE_TAGS,
    258, 259, 262, 273, 277, 278, 279, 284, 317, 338, 339,  # bits, compression, photometric, strips, ...
)


def tiff_entries(data: bytes) -> dict[int, int]:
    """Tag -> offset of its 12-byte entry in the first IFD of a valid little-endian TIFF."""
    assert data[:4] == b"II*\x00"
    ifd = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[ifd:ifd + 2])[0]
    entries = (ifd + 2 + 12 * i for i in range(count))
    return {struct.unpack("<H", data[e:e + 2])[0]: e for e in entries}


@fuzz_settings(500)
@given(
    variant=st.sampled_from(sorted(SEEDS["tiff"])),
    width=wide_dimensions,
    height=wide_dimensions,
    others=st.dictionaries(st.sampled_from(TIFF_TAGS[2:]), wide_dimensions, max_size=2),
    count=st.one_of(st.none(), st.tuples(st.sampled_from(TIFF_TAGS), wide_dimensions)),
)
def test_tiff_tag_values(variant, width, height, others, count, scratch):
    data = bytearray(SEEDS["tiff"][variant])
    entries = tiff_entries(data)
    for tag, value in {256: width, 257: height, **others}.items():
        if tag in entries:  # as one LONG, whatever type the writer chose
            data[entries[tag] + 2:entries[tag] + 12] = struct.pack("<HII", 4, 1, value)
    if count is not None and count[0] in entries:  # a value count that points far past the file
        data[entries[count[0]] + 4:entries[count[0]] + 8] = struct.pack("<I", count[1])
    outcome = check(bytes(data), scratch)
    if not others and count is None and width * height > BUDGET:
        assert refused_as_too_large(outcome), outcome


def peak_rss_bytes() -> int:
    # ru_maxrss: kilobytes on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@pytest.mark.parametrize(
    ("fmt", "claim"),
    [
        ("png", lambda w, h: png_with_header("rgb", w, h, {}, fix_crc=True)),
        ("jpeg", lambda w, h: _jpeg_claiming(w, h)),
        ("gif", lambda w, h: _gif_claiming(w, h)),
        ("tiff", lambda w, h: _tiff_claiming(w, h)),
    ],
)
def test_huge_claims_are_refused_at_the_default_budget_without_allocating(fmt, claim):
    before = peak_rss_bytes()
    for width, height in [(65535, 65535), (50_000, 1001), (7072, 7072)]:  # 4295, 50.05 and 50.01 megapixels
        with pytest.raises(ImageLoadError, match="megapixel limit"):
            load_image(claim(width, height))
    # Decoding even one of these would take 200 MB to 17 GB.
    assert peak_rss_bytes() - before < 100_000_000


def _jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(SEEDS["jpeg"]["baseline"])
    sof = jpeg_frame_header(data)
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _gif_claiming(width: int, height: int) -> bytes:
    data = bytearray(SEEDS["gif"]["still"])
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def _tiff_claiming(width: int, height: int) -> bytes:
    data = bytearray(SEEDS["tiff"]["lzw"])
    entries = tiff_entries(data)
    for tag, value in ((256, width), (257, height)):
        data[entries[tag] + 2:entries[tag] + 12] = struct.pack("<HII", 4, 1, value)
    return bytes(data)


# ---------------------------------------------------------------- not images at all

# Other file types a user may drop: none is an image the studio reads.
FOREIGN_HEADS = [
    b"%PDF-1.7\n", b"%!PS-Adobe-3.0 EPSF-3.0\n", b"8BPS\x00\x01", b"\x00\x00\x01\x00\x01\x00",  # PDF, EPS, PSD, ICO
    b"PK\x03\x04", b"\x7fELF\x02\x01\x01", b"<!DOCTYPE html><html>", b"<?xml version='1.0'?><svg ",
    b"\x00\x00\x00\x20ftypheic", b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"{\"images\": [", b"\xef\xbb\xbf",
]


@fuzz_settings(300)
@given(head=st.sampled_from(FOREIGN_HEADS), tail=st.binary(max_size=512))
def test_other_file_types_are_not_images(head, tail, scratch):
    outcome = check(head + tail, scratch)
    assert isinstance(outcome, ImageLoadError) and outcome.reason == NOT_AN_IMAGE


@fuzz_settings(300)
@given(data=st.one_of(st.binary(min_size=1, max_size=2048), st.text(min_size=1).map(str.encode)))
def test_random_bytes(data, scratch):
    check(data, scratch)


@fuzz_settings(200)
@given(
    signature=st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"GIF87a", b"II*\x00",
                               b"MM\x00*", b"II+\x00", b"MM\x00+"]),
    tail=st.binary(max_size=512),
)
def test_an_image_signature_then_garbage_is_a_broken_image(signature, tail, scratch):
    outcome = check(signature + tail, scratch)
    if isinstance(outcome, ImageLoadError) and "limit" not in outcome.reason and "zero size" not in outcome.reason:
        assert outcome.reason == CORRUPT, outcome
