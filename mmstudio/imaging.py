"""The one safe image loader of mmstudio.

Every image the studio shows, captions or trains on comes through `load_image`,
so that a bad file is always an `ImageLoadError` with a message fit for a user,
and a hostile file (a decompression bomb, a truncated download) never takes the
process down. Pure Pillow + numpy: no Qt, no torch.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mmstudio.errors import ImageLoadError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "content_key",
    "iter_image_files",
    "load_image",
]

DEFAULT_MAX_PIXELS = 50_000_000

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)

# Only these decoders are tried: fewer parsers exposed to untrusted files, and
# none that shell out (EPS runs Ghostscript). Multi-picture phone JPEGs (MPO)
# come through the JPEG opener; "MPO" itself is no key Image.open accepts.
_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")

# Signatures of the formats above, to tell "not an image" from "a broken one"
# when Pillow cannot identify the file. TIFF has six: Pillow's TIFF opener
# takes BigTIFF ("II+", "MM\0+") and two odd byte orders besides the classic
# pair, so a damaged file with any of them is a broken image, not "not an image".
_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8",
    b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+", b"II\x00*", b"MM*\x00",
)

NOT_AN_IMAGE = "not an image file (or a format mmstudio cannot read)"
CORRUPT = "the file is truncated or corrupt"

_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_GREY16_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def load_image(
    source: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Read a file path or encoded bytes into a fully loaded RGB image.

    EXIF orientation is applied, transparency is flattened onto white, and
    animations give their first frame. Any failure is an `ImageLoadError`.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
        data = bytes(source)
        if not data:
            raise ImageLoadError(label, "image data is empty")
        return _decode(io.BytesIO(data), label, max_pixels)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"load_image expects a path or bytes, not {type(source).__name__}")

    path = Path(source)
    label = name or str(path)
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise ImageLoadError(label, "file not found") from None
    except PermissionError:
        raise ImageLoadError(label, "permission denied") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ImageLoadError(label, f"cannot read the file ({_os_reason(exc)})") from exc
    if stat.S_ISDIR(st.st_mode):
        raise ImageLoadError(label, "is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        # A FIFO or a device would block or never end.
        raise ImageLoadError(label, "not a regular file")
    if st.st_size == 0:
        raise ImageLoadError(label, "file is empty")
    try:
        fp = open(path, "rb")
    except PermissionError:
        raise ImageLoadError(label, "permission denied") from None
    except IsADirectoryError:
        raise ImageLoadError(label, "is a folder, not a file") from None
    except OSError as exc:
        raise ImageLoadError(label, f"cannot read the file ({_os_reason(exc)})") from exc
    with fp:
        return _decode(fp, label, max_pixels)


def _decode(fp: IO[bytes], label: str, max_pixels: int) -> Image.Image:
    # Pillow reports decompression bombs through the warnings module (and
    # raises at twice its limit). At open, its warning is redundant with our
    # own size check, which names the size, so it is silenced. While loading
    # (a GIF frame can enlarge the canvas), the warning means "over budget"
    # and becomes an error, unless the caller raised the budget above
    # Pillow's. catch_warnings is process-global: a race between threads can
    # at worst leave one filter for this one warning category behind.
    pillow_limit = Image.MAX_IMAGE_PIXELS
    while_loading = "error" if pillow_limit and max_pixels <= pillow_limit else "ignore"
    try:
        with warnings.catch_warnings():
            # Pillow's remarks on odd files (corrupt EXIF, ...) are noise here:
            # what matters ends up in the image or in the ImageLoadError.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                im = Image.open(fp, formats=_FORMATS)
            except UnidentifiedImageError:
                raise ImageLoadError(label, _unidentified_reason(fp)) from None
            with im:
                _check_size(im.size, label, max_pixels)
                warnings.simplefilter(while_loading, Image.DecompressionBombWarning)
                im.load()
                _check_size(im.size, label, max_pixels)
                upright = _oriented(im)
            try:
                return _to_rgb(upright)
            except ValueError as exc:  # Pillow has no conversion for this mode
                raise ImageLoadError(label, f"its color mode {upright.mode} is not supported") from exc
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(label, _bomb_reason(str(exc), max_pixels)) from exc
    except MemoryError:
        raise ImageLoadError(label, "not enough memory to decode the image") from None
    except Exception as exc:
        # Decoders fail in many ways on bad data (OSError, SyntaxError,
        # struct.error, EOFError, zlib.error, ValueError, IndexError, ...);
        # to a user they all mean the same thing.
        raise ImageLoadError(label, CORRUPT) from exc


def _check_size(size: tuple[int, int], label: str, max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageLoadError(label, f"image has zero size ({width}x{height} pixels)")
    if width * height > max_pixels:
        raise ImageLoadError(
            label, f"image is {width}x{height} pixels, more than the {_limit_text(max_pixels)}"
        )


def _limit_text(max_pixels: int) -> str:
    if max_pixels >= 1_000_000:
        return f"{max_pixels / 1_000_000:g} megapixel limit"
    return f"{max_pixels} pixel limit"


def _bomb_reason(message: str, max_pixels: int) -> str:
    # Pillow refused before we saw the size; its message has the pixel count.
    found = re.search(r"\((\d+) pixels\)", message)
    if not found:
        return f"image is too large, more than the {_limit_text(max_pixels)}"
    pillow = re.search(r"limit of (\d+)", message)
    limit = min(max_pixels, int(pillow.group(1))) if pillow else max_pixels
    pixels = int(found.group(1))
    count = f"{pixels / 1_000_000:,.0f} megapixels" if pixels >= 1_000_000 else f"{pixels} pixels"
    return f"image has {count}, more than the {_limit_text(limit)}"


def _unidentified_reason(fp: IO[bytes]) -> str:
    try:
        fp.seek(0)
        head = fp.read(16)
    except Exception:
        return NOT_AN_IMAGE
    if (
        head.startswith(_SIGNATURES)
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        or (head[:2] == b"BM" and head[6:10] == bytes(4))  # BMP's reserved zeros
    ):
        return CORRUPT
    return NOT_AN_IMAGE


def _os_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _oriented(im: Image.Image) -> Image.Image:
    """A detached copy of `im`, turned upright by its EXIF orientation."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:
        # Broken EXIF is metadata trouble, not a reason to lose the picture.
        return im.copy()


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode in _GREY16_MODES:
        # Pillow's own conversion clips 16-bit grey at 255; scale instead.
        # round(v / 257) in integers, which never meet a tie.
        grey = np.clip(np.asarray(im), 0, 65535).astype(np.uint32)
        return _grey_to_rgb((grey * 2 + 257) // 514)
    if mode == "F":
        grey = np.nan_to_num(np.asarray(im), nan=0.0)
        return _grey_to_rgb(np.rint(np.clip(grey, 0, 255)))
    # (Image.has_transparency_data, which says this, needs Pillow 10.1.)
    palette_alpha = mode == "P" and im.palette is not None and im.palette.mode.endswith("A")
    if mode in _ALPHA_MODES or "transparency" in im.info or palette_alpha:
        rgba = im.convert("RGBA")
        # Models see transparent pixels as white, as a viewer would show them.
        flat = Image.new("RGB", im.size, (255, 255, 255))
        flat.paste(rgba, (0, 0), rgba)
        return flat
    return im if mode == "RGB" else im.convert("RGB")


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(grey.astype(np.uint8)).convert("RGB")


def iter_image_files(paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[Path]:
    """Expand files and folders into the list of image files to process.

    Folders are searched recursively, in sorted order, for files with an image
    suffix, skipping hidden files and folders. Files named explicitly are kept
    whatever their suffix (so the loader can say what is wrong with them), in
    the order given. A file reached twice is listed once.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        if path not in seen:
            seen.add(path)
            found.append(path)

    for item in paths:
        path = Path(item)
        if path.is_dir():
            for file in _images_under(path):
                add(file)
        else:
            add(path)
    return found


def _images_under(folder: Path) -> list[Path]:
    files = []
    # Symlinked folders are not followed: they can loop.
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                files.append(Path(root, name))

    def key(file: Path) -> list[tuple[str, str]]:
        return [(part.casefold(), part) for part in file.relative_to(folder).parts]

    return sorted(files, key=key)


def content_key(image: Image.Image) -> str:
    """A stable digest of an image's pixels, mode and size, for caches."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.mode}\0{image.width}x{image.height}\0".encode())
    if image.mode in ("P", "PA"):
        # The same indices mean other colors under another palette.
        digest.update(bytes(image.getpalette() or ()))
    digest.update(image.tobytes())
    return digest.hexdigest()
