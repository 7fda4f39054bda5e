"""Training-set augmentations of sections 5.2 and 5.3 in plain torch (no torchvision).

All functions act on a batch ``x`` of shape ``(B, C, H, W)`` with values in
``[0, 1]`` and draw their randomness from a ``torch.Generator`` (on the CPU),
so that a run is reproducible and resumable.

* ``"crop"`` (section 5.2, CIFAR10): random resized crop of 60-100 % of the
  image area with aspect ratio in ``[3/4, 4/3]``, resized back to ``H x W``.
* ``"heavy"`` (section 5.3, STL10): random resized crop of 8-100 % of the
  area, horizontal flip (p = 1/2), grey scale (p = 0.1), colour jitter with
  brightness, contrast, saturation and hue 0.5, rotation by an angle uniform
  in ``[-pi, pi]`` (zero fill).

The crop, flip and rotation are one affine resampling (bilinear,
``grid_sample``), so the image is interpolated once.  Crop sizes are drawn as
in the usual "random resized crop" recipe: up to ten tries of (area, log aspect
ratio) uniform; the first crop that fits is used, otherwise the whole image with
the aspect ratio clamped to the range.  Colour jitter applies its four
operations in an order drawn per batch; the contrast reference is the mean grey
level of the visible (non-fill) pixels.  On one-channel images grey scale,
saturation and hue are no-ops.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from anisotropy.validation import check_choice

__all__ = [
    "augment_batch",
    "crop_boxes",
    "spatial_transform",
    "color_jitter",
    "grayscale",
    "rgb_to_hsv",
    "hsv_to_rgb",
    "AugmentName",
    "AUGMENTATIONS",
]

#: training-set augmentations (the one definition; configuration and CLI import it)
AugmentName = Literal["none", "crop", "heavy"]
AUGMENTATIONS: tuple[str, ...] = get_args(AugmentName)
#: tries of the crop-size rejection step (the usual recipe uses ten)
CROP_TRIES = 10
#: ITU-R 601 luma weights used for grey scale, as in common image libraries
LUMA = (0.299, 0.587, 0.114)
#: guards the HSV conversion against division by a zero chroma / value
HSV_EPS = 1e-8


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def crop_boxes(
    batch: int,
    height: int,
    width: int,
    *,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> torch.Tensor:
    """Random crop boxes ``(top, left, h, w)`` in pixels, shape ``(batch, 4)`` (float64).

    The area fraction is uniform in ``scale``, the log aspect ratio ``w/h`` uniform
    in ``log(ratio)``; see the module docstring for the fallback.
    """
    area = height * width
    frac = _uniform(batch * CROP_TRIES, *scale, generator).view(batch, CROP_TRIES)
    logr = _uniform(batch * CROP_TRIES, math.log(ratio[0]), math.log(ratio[1]), generator).view(
        batch, CROP_TRIES
    )
    r = torch.exp(logr)
    w = torch.round(torch.sqrt(frac * area * r))
    h = torch.round(torch.sqrt(frac * area / r))
    ok = (w >= 1) & (w <= width) & (h >= 1) & (h <= height)
    first = torch.argmax(ok.to(torch.int64), dim=1)
    rows = torch.arange(batch)
    hh, ww = h[rows, first], w[rows, first]
    # fallback: whole image with the aspect ratio clamped into the range
    any_ok = ok.any(dim=1)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = float(width), float(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = float(round(height * ratio[1])), float(height)
    else:
        fw, fh = float(width), float(height)
    hh = torch.where(any_ok, hh, torch.full_like(hh, fh))
    ww = torch.where(any_ok, ww, torch.full_like(ww, fw))
    u = torch.rand(batch, 2, generator=generator, dtype=torch.float64)
    top = torch.floor(u[:, 0] * (height - hh + 1))
    left = torch.floor(u[:, 1] * (width - ww + 1))
    top = torch.where(any_ok, top, torch.floor((height - hh) / 2))
    left = torch.where(any_ok, left, torch.floor((width - ww) / 2))
    return torch.stack([top, left, hh, ww], dim=1)


def spatial_transform(
    x: torch.Tensor,
    boxes: torch.Tensor,
    *,
    flip: torch.Tensor | None = None,
    angle: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop ``boxes``, resize to ``H x W``, flip horizontally, rotate by ``angle``.

    Parameters
    ----------
    x : (B, C, H, W) tensor
    boxes : (B, 4) tensor of ``(top, left, h, w)`` in pixels
    flip : (B,) bool tensor, optional
    angle : (B,) tensor of radians (counter-clockwise), optional

    Returns
    -------
    out : (B, C, H, W) tensor, zero where the rotation leaves the crop
    visible : (B, 1, H, W) bool tensor, the pixels that came from the image
    """
    b, _, height, width = x.shape
    dev = x.device
    lin_y = (torch.arange(height, dtype=torch.float64) + 0.5) / height * 2 - 1
    lin_x = (torch.arange(width, dtype=torch.float64) + 0.5) / width * 2 - 1
    gy, gx = torch.meshgrid(lin_y, lin_x, indexing="ij")
    gx = gx.expand(b, height, width)
    gy = gy.expand(b, height, width)
    if angle is not None:  # inverse rotation of the output pixel, in pixel units
        c = torch.cos(angle.to(torch.float64)).view(b, 1, 1)
        s = torch.sin(angle.to(torch.float64)).view(b, 1, 1)
        px, py = gx * (width / 2), gy * (height / 2)
        gx = (c * px - s * py) / (width / 2)
        gy = (s * px + c * py) / (height / 2)
    visible = (gx.abs() <= 1) & (gy.abs() <= 1)
    if flip is not None:
        gx = torch.where(flip.view(b, 1, 1), -gx, gx)
    top, left, h, w = (boxes[:, i].view(b, 1, 1) for i in range(4))
    # crop pixel coordinates -> input normalised coordinates
    ix = ((left + (gx + 1) / 2 * w) / width) * 2 - 1
    iy = ((top + (gy + 1) / 2 * h) / height) * 2 - 1
    grid = torch.stack([ix, iy], dim=-1).to(dtype=x.dtype, device=dev)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    vis = visible.unsqueeze(1).to(dev)
    return out * vis, vis


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma of RGB images, shape ``(B, 1, H, W)`` (identity on one channel)."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """RGB in ``[0, 1]`` -> HSV with hue in ``[0, 1)``; shape ``(B, 3, H, W)``."""
    r, g, b = x.unbind(dim=1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / (maxc + HSV_EPS), torch.zeros_like(maxc))
    d = delta + HSV_EPS
    h = torch.where(
        maxc == r, ((g - b) / d) % 6, torch.where(maxc == g, (b - r) / d + 2, (r - g) / d + 4)
    )
    h = torch.where(delta > 0, h / 6, torch.zeros_like(h)) % 1.0
    return torch.stack([h, s, maxc], dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = x.unbind(dim=1)
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=1)
    t = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * t


def _factor(b: int, spread: float, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    f = _uniform(b, max(0.0, 1 - spread), 1 + spread, g)
    return f.to(dtype=like.dtype, device=like.device).view(b, 1, 1, 1)


def color_jitter(
    x: torch.Tensor,
    *,
    strength: float,
    generator: torch.Generator,
    visible: torch.Tensor | None = None,
) -> torch.Tensor:
    """Brightness, contrast, saturation (factors in ``[1-s, 1+s]``) and hue (shift in ``[-s, s]``).

    The four operations run in an order drawn per batch; results are clipped to ``[0, 1]``.
    ``visible`` (``(B, 1, H, W)`` bool) restricts the contrast mean to real pixels.
    """
    b, c = x.shape[:2]
    order = torch.randperm(4, generator=generator).tolist()
    for op in order:
        if op == 0:
            x = (x * _factor(b, strength, generator, x)).clamp(0, 1)
        elif op == 1:
            f = _factor(b, strength, generator, x)
            gray = grayscale(x)
            if visible is None:
                mean = gray.mean(dim=(1, 2, 3), keepdim=True)
            else:
                vis = visible.to(x.dtype)
                mean = (gray * vis).sum(dim=(1, 2, 3), keepdim=True) / vis.sum(
                    dim=(1, 2, 3), keepdim=True
                ).clamp_min(1)
            x = (f * x + (1 - f) * mean).clamp(0, 1)
        elif op == 2:
            f = _factor(b, strength, generator, x)
            if c == 3:
                x = (f * x + (1 - f) * grayscale(x)).clamp(0, 1)
        else:
            shift = _uniform(b, -min(strength, 0.5), min(strength, 0.5), generator)
            if c == 3:
                hsv = rgb_to_hsv(x)
                hue = (hsv[:, 0] + shift.to(x.dtype).view(b, 1, 1)) % 1.0
                x = hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], dim=1)).clamp(0, 1)
    return x


def augment_batch(
    x: torch.Tensor, kind: AugmentName, *, generator: torch.Generator
) -> torch.Tensor:
    """Apply the augmentation ``kind`` ("none", "crop", "heavy") to a ``(B, C, H, W)`` batch."""
    check_choice("augment", kind, AUGMENTATIONS)
    if kind == "none":
        return x
    if x.ndim != 4:
        raise ValueError(f"augment {kind!r} needs images (B, C, H, W), got shape {tuple(x.shape)}")
    b, _, height, width = x.shape
    if kind == "crop":
        boxes = crop_boxes(
            b, height, width, scale=(0.6, 1.0), ratio=(3 / 4, 4 / 3), generator=generator
        )
        out, _ = spatial_transform(x, boxes)
        return out
    boxes = crop_boxes(
        b, height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), generator=generator
    )
    flip = torch.rand(b, generator=generator) < 0.5
    angle = _uniform(b, -math.pi, math.pi, generator)
    gray = torch.rand(b, generator=generator) < 0.1
    out, visible = spatial_transform(x, boxes, flip=flip, angle=angle)
    if x.shape[1] == 3:
        g = gray.view(b, 1, 1, 1).to(out.device)
        out = torch.where(g, grayscale(out).expand_as(out), out)
    out = color_jitter(out, strength=0.5, generator=generator, visible=visible)
    return out * visible.to(out.dtype)
