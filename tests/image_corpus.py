"""A corpus of odd and broken image files, for testing the image loader.

`make_corpus(folder)` writes the files and returns one `CorpusCase` each. An ok
case says what the loader must return: the RGB size after EXIF orientation, and
the color expected at pixel `probe`. Lossy cases carry a looser tolerance.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)

TOO_LARGE = "megapixel limit"
CORRUPT = "truncated or corrupt"
NOT_IMAGE = "not an image file"

# Formats whose colors survive only approximately.
LOSSY_TOLERANCE = 12
EXACT_TOLERANCE = 2


@dataclass(frozen=True)
class CorpusCase:
    name: str
    path: Path
    ok: bool
    size: tuple[int, int] | None = None
    probe: tuple[int, int] | None = None
    color: tuple[int, int, int] | None = None
    tolerance: int = EXACT_TOLERANCE
    reason: str | None = None  # for error cases: a fragment the message must contain


# ---------------------------------------------------------------- building blocks


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

WEBP_BOMB_HEX = "524946461c000000574542505650384c0f0000002f0fe7c3090710d1fffe0722a2ff0100"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims `width`x`height` RGB but carries almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    return PNG_SIGNATURE + chunks


def bmp_header_only(width: int, height: int) -> bytes:
    """A 24-bit BMP whose header claims `width`x`height` and has no pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    file_header = struct.pack("<2sIHHI", b"BM", 14 + len(info), 0, 0, 14 + len(info))
    return file_header + info


def gif_header_only(width: int, height: int) -> bytes:
    """A GIF with a logical screen and one image descriptor of that size, no data."""
    screen = struct.pack("<HHBBB", width, height, 0, 0, 0)
    descriptor = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return b"GIF89a" + screen + descriptor + b"\x02\x02\x44\x01\x00;"


def orientation_exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def first_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random RGB pixels: they compress badly, so a cut file loses pixel data."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def corner_image(width: int = 48, height: int = 32) -> Image.Image:
    """Blue, with a red 16x16 block at the top-left corner (MCU-aligned for JPEG)."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, 16, 16))
    return image


def small_samples() -> dict[str, bytes]:
    """Tiny valid files of several formats, as seeds for mutation tests."""
    base = corner_image(24, 16)
    return {
        "png": encode(base, "PNG"),
        "jpeg": encode(base, "JPEG", quality=80),
        "gif": encode(base.convert("P"), "GIF"),
        "tiff": encode(base, "TIFF"),
        "webp": encode(base, "WEBP", lossless=True),
        "bmp": encode(base, "BMP"),
    }


# ---------------------------------------------------------------- the corpus


def make_corpus(folder: Path) -> list[CorpusCase]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[CorpusCase] = []

    def ok(name, data, size, probe, color, tolerance=EXACT_TOLERANCE):
        path = folder / name
        path.write_bytes(data)
        cases.append(CorpusCase(name, path, True, size, probe, color, tolerance))

    def bad(name, data, reason=CORRUPT):
        path = folder / name
        path.write_bytes(data)
        cases.append(CorpusCase(name, path, False, reason=reason))

    corner = corner_image()  # 48x32, red block centred near (8, 8)

    # --- plain formats
    ok("rgb.png", encode(corner, "PNG"), (48, 32), (8, 8), RED)
    jpeg = encode(corner, "JPEG", quality=95, subsampling=0)  # 4:4:4 keeps the red block red
    ok("plain.jpg", jpeg, (48, 32), (8, 8), RED, LOSSY_TOLERANCE)
    ok("lossless.webp", encode(corner, "WEBP", lossless=True), (48, 32), (40, 20), BLUE)
    ok("lossy.webp", encode(corner, "WEBP", quality=90), (48, 32), (40, 20), BLUE, LOSSY_TOLERANCE)
    ok("plain.bmp", encode(corner, "BMP"), (48, 32), (8, 8), RED)
    ok("plain.gif", encode(corner.convert("P"), "GIF"), (48, 32), (8, 8), RED)
    ok("plain.tiff", encode(corner, "TIFF", compression="tiff_deflate"), (48, 32), (8, 8), RED)
    ok("grey.png", encode(Image.new("L", (10, 6), 77), "PNG"), (10, 6), (3, 3), (77, 77, 77))
    # Phone cameras write multi-picture JPEGs, which Pillow opens as "MPO".
    mpo = encode(corner, "MPO", save_all=True, append_images=[Image.new("RGB", (48, 32), BLUE)])
    ok("phone-mpo.jpg", mpo, (48, 32), (8, 8), RED, LOSSY_TOLERANCE)
    ok("suffix-lies.png", jpeg, (48, 32), (8, 8), RED, LOSSY_TOLERANCE)

    # --- EXIF orientation: the red block must land where a viewer shows it
    for orientation, size, probe in [
        (3, (48, 32), (39, 23)),  # rotated 180: bottom-right
        (6, (32, 48), (23, 8)),  # rotated 90 clockwise: top-right
        (8, (32, 48), (8, 39)),  # rotated 90 counter-clockwise: bottom-left
    ]:
        data = encode(corner, "JPEG", quality=95, subsampling=0, exif=orientation_exif(orientation))
        ok(f"exif-orientation-{orientation}.jpg", data, size, probe, RED, LOSSY_TOLERANCE)
    ok("exif-orientation-6.png", encode(corner, "PNG", exif=orientation_exif(6)), (32, 48), (23, 8), RED)
    webp = encode(corner, "WEBP", lossless=True, exif=orientation_exif(8))
    ok("exif-orientation-8.webp", webp, (32, 48), (8, 39), RED)
    # EXIF that is not EXIF: the picture still loads, unrotated.
    junk = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + b"\xee" * 20
    broken_exif = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(junk) + 2) + junk + jpeg[2:]
    ok("broken-exif.jpg", broken_exif, (48, 32), (8, 8), RED, LOSSY_TOLERANCE)

    # --- modes
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    palette.paste(1, (4, 0, 8, 8))
    ok("palette-transparent.png", encode(palette, "PNG", transparency=0), (8, 8), (1, 1), WHITE)
    ok("palette-opaque-part.png", encode(palette, "PNG", transparency=0), (8, 8), (6, 1), BLUE)
    ok("palette-transparent.gif", encode(palette, "GIF", transparency=0), (8, 8), (1, 1), WHITE)
    rgb_trns = Image.new("RGB", (6, 6), (10, 20, 30))
    ok("rgb-trns.png", encode(rgb_trns, "PNG", transparency=(10, 20, 30)), (6, 6), (2, 2), WHITE)
    grey_alpha = Image.new("LA", (6, 4), (0, 128))  # black, half transparent
    ok("grey-alpha.png", encode(grey_alpha, "PNG"), (6, 4), (1, 1), (127, 127, 127))
    half_red = Image.new("RGBA", (6, 4), (255, 0, 0, 128))
    ok("half-transparent.png", encode(half_red, "PNG"), (6, 4), (2, 2), (255, 127, 127))
    clear = Image.new("RGBA", (6, 4), (0, 0, 0, 0))
    ok("fully-transparent.webp", encode(clear, "WEBP", lossless=True), (6, 4), (2, 2), WHITE)
    cyan = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    ok("cmyk.jpg", encode(cyan, "JPEG", quality=95), (16, 16), (8, 8), (0, 255, 255), LOSSY_TOLERANCE)
    ok("cmyk.tiff", encode(Image.new("CMYK", (6, 4), (0, 255, 0, 0)), "TIFF"), (6, 4), (1, 1), (255, 0, 255))
    ok("grey16.png", encode(Image.new("I;16", (6, 4), 32896), "PNG"), (6, 4), (1, 1), (128, 128, 128))
    ok("grey16-white.png", encode(Image.new("I;16", (6, 4), 65535), "PNG"), (6, 4), (1, 1), WHITE)
    ok("grey16.tiff", encode(Image.new("I;16", (6, 4), 51400), "TIFF"), (6, 4), (1, 1), (200, 200, 200))
    ok("grey32.tiff", encode(Image.new("I", (6, 4), 25700), "TIFF"), (6, 4), (1, 1), (100, 100, 100))
    floats = Image.fromarray(np.array([[-5.0, 100.4, 300.0]], dtype=np.float32))
    ok("float-clipped.tiff", encode(floats, "TIFF"), (3, 1), (0, 0), BLACK)
    ok("float-mid.tiff", encode(floats, "TIFF"), (3, 1), (1, 0), (100, 100, 100))
    ok("float-over.tiff", encode(floats, "TIFF"), (3, 1), (2, 0), WHITE)
    bits = Image.new("1", (9, 5), 0)
    bits.paste(1, (5, 0, 9, 5))
    ok("one-bit.png", encode(bits, "PNG"), (9, 5), (7, 2), WHITE)
    ok("one-bit-black.png", encode(bits, "PNG"), (9, 5), (1, 2), BLACK)
    lab = Image.new("LAB", (4, 4), (100, 128, 128))  # L=39%, neutral: a mid-dark grey
    ok("lab.tiff", encode(lab, "TIFF"), (4, 4), (1, 1), (94, 94, 94), 6)

    # --- animations: the first frame
    red, blue = Image.new("RGB", (10, 8), RED), Image.new("RGB", (10, 8), BLUE)
    for name, fmt, extra in [
        ("animated.gif", "GIF", {}),
        ("animated.webp", "WEBP", {"lossless": True}),
        ("animated.png", "PNG", {}),  # APNG
    ]:
        data = encode(red, fmt, save_all=True, append_images=[blue], duration=100, **extra)
        with Image.open(io.BytesIO(data)) as check:
            assert check.n_frames == 2, name
        ok(name, data, (10, 8), (5, 4), RED)

    # --- too large: refused from the header, before any pixel is decoded
    bad("huge-40000x40000.png", png_header_only(40000, 40000), TOO_LARGE)
    bad("huge-12000x6000.bmp", bmp_header_only(12000, 6000), TOO_LARGE)
    bad("huge-10000x10000.gif", gif_header_only(10000, 10000), TOO_LARGE)
    # A real, complete lossless WebP of 10000x10000 blue pixels: 36 bytes.
    bad("huge-10000x10000.webp", bytes.fromhex(WEBP_BOMB_HEX), TOO_LARGE)
    bad("zero-width.png", png_header_only(0, 10), reason=None)
    bad("zero-height.bmp", bmp_header_only(10, 0), reason=None)

    # --- broken files
    png = encode(noise(64, 64), "PNG")
    bad("truncated.png", first_half(png))
    bad_crc = bytearray(png)
    bad_crc[29] ^= 1  # the last byte of IHDR's CRC
    bad("bad-crc.png", bytes(bad_crc))
    bad("signature-only.png", PNG_SIGNATURE)
    jpeg = encode(noise(64, 64), "JPEG", quality=90)
    bad("truncated.jpg", first_half(jpeg))
    bad("truncated.webp", first_half(encode(noise(64, 64), "WEBP", quality=90)))
    bad("truncated.tiff", first_half(encode(noise(64, 64), "TIFF")))
    bad("truncated.gif", first_half(encode(noise(64, 64).convert("P"), "GIF")))
    # Well-formed chunks (right CRCs), but the IDAT's zlib data is garbage.
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"\xff" * 64) + png_chunk(b"IEND", b"")
    bad("bad-idat.png", PNG_SIGNATURE + chunks)
    bad("empty.png", b"", "file is empty")
    bad("notes.txt", b"These are not the pixels you are looking for.\n" * 4, NOT_IMAGE)
    bad("text-named.png", b"hello, I am plain text in a .png file\n", NOT_IMAGE)
    bad("random.jpg", random.Random(7).randbytes(2048), NOT_IMAGE)
    bad("header-only.gif", b"GIF89a")
    bad("html.webp", b"<!doctype html><html><body>404 Not Found</body></html>\n", NOT_IMAGE)
    (folder / "x.png").mkdir(exist_ok=True)
    cases.append(CorpusCase("x.png", folder / "x.png", False, reason="is a folder"))
    return cases
