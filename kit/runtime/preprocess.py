"""Image preprocessing in numpy alone: channels, antialiased resize, normalisation.

The runtime must not need torch or Pillow, so resizing is a separable antialiased
bilinear (triangle) filter, the same family as Pillow's BILINEAR and torchvision's
``antialias=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ..errors import InputError

__all__ = ["conversion_notes", "is_colour", "prepare_images", "resize", "to_channels"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's "L"


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """An HxW, HxWx1, HxWx3 or HxWx4 image as float32 HxWx``channels`` in [0, 255].

    Raises:
        InputError: the image has another rank or channel count.
    """
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise InputError(
            f"An image must be HxW (L), HxWx3 (RGB) or HxWx4 (RGBA); got shape {image.shape}."
        )
    img = image.astype(np.float32)
    if img.shape[2] == 4:
        img = img[:, :, :3]  # the colour, as Pillow's RGBA->RGB/L conversion does
    if channels == 1 and img.shape[2] == 3:
        img = (img @ _LUMA)[:, :, None]
    elif channels == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] != channels:
        raise InputError(f"Cannot turn a {img.shape[2]}-channel image into {channels} channels.")
    return img


@lru_cache(maxsize=64)
def _weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of an antialiased linear resampling from n_in to n_out."""
    scale = n_in / n_out
    support = max(scale, 1.0)  # widen the triangle when shrinking (antialiasing)
    centers = (np.arange(n_out) + 0.5) * scale - 0.5
    taps = np.arange(n_in)[None, :]
    w = np.maximum(0.0, 1.0 - np.abs(taps - centers[:, None]) / support)
    w /= w.sum(axis=1, keepdims=True)
    return w.astype(np.float32)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an HxWxC float image to ``height`` x ``width``."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    rows = _weights(h, height)
    cols = _weights(w, width)
    return np.einsum("ih,hwc,jw->ijc", rows, image, cols, optimize=True)


def prepare_images(
    images: np.ndarray | Sequence[np.ndarray],
    input_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
) -> np.ndarray:
    """uint8 images of any size and L/RGB/RGBA mode -> a normalised float32 NCHW batch.

    A single image may be passed alone. Values are scaled to [0, 1], then
    ``(x - mean) / std`` per channel, as the network was trained.

    Raises:
        InputError: an image is empty, of another dtype, rank or channel count.
    """
    if (
        isinstance(images, np.ndarray)
        and images.ndim in (2, 3)
        and (images.ndim == 2 or images.shape[-1] in (1, 3, 4))
    ):
        images = [images]
    c, h, w = (int(v) for v in input_shape)
    batch = np.empty((len(images), c, h, w), dtype=np.float32)
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    s = np.asarray(std, dtype=np.float32)[:, None, None]
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.dtype != np.uint8:
            raise InputError(
                f"Image {i} has dtype {image.dtype}; classify takes uint8 images (0-255)."
            )
        if image.size == 0:
            raise InputError(f"Image {i} is empty (shape {image.shape}).")
        img = resize(to_channels(image, c), h, w)
        batch[i] = (img.transpose(2, 0, 1) / 255.0 - m) / s
    return batch


def is_colour(image: np.ndarray) -> bool:
    """Whether a uint8 image holds colour (its channels differ somewhere), not grey."""
    if image.ndim != 3 or image.shape[2] < 3:
        return False
    rgb = image[:, :, :3]
    return bool((rgb[:, :, 0] != rgb[:, :, 1]).any() or (rgb[:, :, 1] != rgb[:, :, 2]).any())


def conversion_notes(
    image: np.ndarray, input_shape: Sequence[int | None], size: tuple[int, int] | None = None
) -> list[str]:
    """What feeding ``image`` to a model that takes ``input_shape`` (C, H, W) does to it, one
    phrase each (nothing when the image is what the model takes); ``size`` is the image's
    (height, width) in its file, when decoding made it smaller."""
    channels = 1 if image.ndim == 2 else image.shape[2]
    c, h, w = (int(v) if v else 0 for v in input_shape)
    height, width = size or image.shape[:2]
    notes = []
    if channels == 4:
        notes.append("alpha dropped")
    if c == 1 and channels >= 3:
        notes.append("colour converted to grey" if is_colour(image) else "RGB read as grey")
    elif c == 3 and channels == 1:
        notes.append("grey repeated into 3 channels")
    if h and w and (height, width) != (h, w):
        notes.append(f"resized {width}x{height} -> {w}x{h}")
    return notes
