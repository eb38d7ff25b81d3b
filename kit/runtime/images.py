"""Image files for ``kit predict`` and the pipeline check: every mode kit accepts as the same
8-bit picture, and no file (a decompression bomb, a header claiming 10^10 pixels) costs
unbounded memory. Pillow and numpy only (no torch)."""

from __future__ import annotations

import contextlib
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import InputError, UsageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "SMALL_FILE_BYTES",
    "image_size",
    "read_image",
    "small_png",
]

#: the image files kit reads from a folder (kit predict, kit infer)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

#: the largest image decoded unless --max-image-pixels says otherwise (an 8000 x 8000 photo)
DEFAULT_MAX_PIXELS = 64_000_000
#: a PNG file's first bytes, and the colour types libspng reads here (grey, RGB, RGBA)
_PNG = b"\x89PNG\r\n\x1a\n"
_FAST_COLOUR_TYPES = {0: 1, 2: 3, 6: 4}
#: PNG files this size or larger go to Pillow, which streams them
SMALL_FILE_BYTES = 1 << 16
#: modes Pillow converts losslessly to L, RGB or RGBA
_CONVERTIBLE = {"1", "P", "PA", "LA", "La", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"}


@contextlib.contextmanager
def _own_pixel_limit() -> Iterator[None]:
    """Pillow's bomb check off for the block (a module global): kit checks the size itself
    once the header is read, before any pixel is decoded, and says what it found."""
    from PIL import Image

    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def read_image(
    path: Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    size: tuple[int, int] | None = None,
    small_png_tried: bool = False,
) -> np.ndarray:
    """``path`` as a uint8 HxW (L), HxWx3 (RGB) or HxWx4 (RGBA) array.

    A JPEG much larger than ``size`` (height, width) is reduced while it is decoded.
    ``small_png_tried``: the caller already gave the file's first bytes to
    :func:`small_png`, so they are not read again for it.

    Raises:
        UsageError: the file does not exist.
        InputError: not an image, a mode kit cannot map to 8 bits, or more pixels than
            ``max_pixels`` (a decompression bomb among them).
    """
    from PIL import Image, UnidentifiedImageError

    png = path.suffix.lower() == ".png" and not small_png_tried
    if png and (fast := _fast_png(path, max_pixels)) is not None:
        return fast
    try:
        with _own_pixel_limit(), Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise InputError(
                    f"Image {path} claims {width}x{height} pixels, more than the limit of "
                    f"{max_pixels}; pass --max-image-pixels to allow it."
                )
            if size is not None and img.format == "JPEG":
                img.draft(img.mode, (size[1], size[0]))  # decode at a reduced scale >= size
            img.load()
            return _eight_bit(img, path)
    except FileNotFoundError:
        raise UsageError(f"Image {path} does not exist.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InputError(f"Cannot read image {path}: {str(exc).rstrip('.')}.") from None


def _fast_png(path: Path, max_pixels: int) -> np.ndarray | None:
    """An 8-bit grey, RGB or RGBA PNG decoded by libspng (:func:`small_png`); None for
    anything else, or anything wrong (Pillow then reads it, or says what is wrong)."""
    try:
        with open(path, "rb") as f:
            data = f.read(SMALL_FILE_BYTES)  # one read for the small files this is for
    except OSError:
        return None
    return small_png(data, max_pixels)


def small_png(data: bytes, max_pixels: int) -> np.ndarray | None:
    """A whole PNG file's bytes, if smaller than SMALL_FILE_BYTES and 8-bit grey, RGB or
    RGBA, decoded by libspng (pyspng), several times faster than Pillow on small images;
    None for anything else or anything wrong. The header's size is checked before a pixel
    is decoded; a larger file is left to Pillow, which streams it."""
    try:
        import pyspng
    except ImportError:  # an optional speed-up (Linux wheels)
        return None
    if len(data) >= SMALL_FILE_BYTES or len(data) < 29:
        return None
    if data[:8] != _PNG or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    channels = _FAST_COLOUR_TYPES.get(data[25], 0)
    if data[24] != 8 or not channels or not 0 < width * height <= max_pixels:
        return None
    try:
        image = pyspng.load(data)
    except (RuntimeError, ValueError):
        return None
    if image.dtype != np.uint8 or image.shape[:2] != (height, width):
        return None
    return image if channels > 1 or image.ndim == 2 else image.reshape(height, width)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as the file's header says (nothing decoded).

    Raises:
        InputError: not an image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with _own_pixel_limit(), Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InputError(f"Cannot read image {path}: {str(exc).rstrip('.')}.") from None


def _eight_bit(img: object, path: Path) -> np.ndarray:
    """The image's pixels as uint8 L, RGB or RGBA; 16-bit grey scaled, not clipped."""
    from PIL import Image

    assert isinstance(img, Image.Image)
    mode = img.mode
    if mode in ("L", "RGB", "RGBA"):
        return np.asarray(img, dtype=np.uint8)
    if mode.startswith("I;16") or mode == "I":
        grey = np.asarray(img).astype(np.float64)
        if grey.min(initial=0) < 0 or grey.max(initial=0) > 65535:
            raise InputError(
                f"Image {path} holds 32-bit integers outside 0-65535; save it as 8 or 16 bits."
            )
        return np.rint(grey / 257.0).astype(np.uint8)  # 65535 -> 255, as 8-bit tools do
    if mode in _CONVERTIBLE:
        alpha = "A" in img.getbands() or "transparency" in img.info
        return np.asarray(
            img.convert("RGBA" if alpha else ("L" if mode == "1" else "RGB")), dtype=np.uint8
        )
    raise InputError(
        f"Image {path} has mode {mode}, which kit cannot map to 8-bit grey or colour; save it "
        "as an 8- or 16-bit PNG or a JPEG."
    )
