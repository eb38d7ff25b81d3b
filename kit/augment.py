"""Batch-level augmentation that runs where the batch lives (CPU or GPU)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["random_affine"]


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    strength: float = 1.0,
    fill: float = 0.0,
    degrees: float = 12.0,
    scale: float = 0.1,
    shear: float = 0.08,
    shift_px: float = 2.0,
    elastic_px: float = 0.0,
    elastic_grid: int = 4,
) -> torch.Tensor:
    """Rotate, scale, shear and shift each image of ``x`` (N, C, H, W) by a random amount.

    The random draws come from ``generator`` (on the CPU), so a run is reproducible and
    a resumed run draws what the uninterrupted one would have. ``fill`` is the value of
    pixels moved in from outside (the normalised background). ``elastic_px`` adds a
    smooth random displacement of about that many pixels (a coarse
    ``elastic_grid`` x ``elastic_grid`` field upsampled bicubically), the elastic
    distortion of Simard et al. (2003) that suits handwriting.
    """
    n, _, h, _ = x.shape
    s = strength

    def uniform(*shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=generator) * 2 - 1).to(x.device)

    angle = uniform(n) * math.radians(degrees * s)
    zoom = 1 + uniform(n) * scale * s
    skew = uniform(n) * shear * s
    shift = uniform(n, 2) * (2 * shift_px / h) * s
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin + skew, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)],
        1,
    ).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if elastic_px > 0:
        coarse = uniform(n, 2, elastic_grid, elastic_grid) * (2 * elastic_px / h) * s
        field = F.interpolate(coarse, size=tuple(x.shape[-2:]), mode="bicubic", align_corners=True)
        grid = grid + field.permute(0, 2, 3, 1).to(grid.dtype)
    return F.grid_sample(x - fill, grid, align_corners=False, padding_mode="zeros") + fill
