"""Tiled super-resolution inference for images and frame sequences.

Tiling: the input is cut into `tile x tile` squares; each is run inside a window with at least
`tile_pad` extra input pixels of context on every side that is not the image border, and only
its own square of the output is kept. All windows have one shape, `tile + 2 * tile_pad` (or the
image size when smaller): near the border a window slides inward rather than being clipped.

A 3x3 conv stack of receptive radius r (in input pixels) makes an output pixel depend on inputs
at most r away, so when tile_pad >= r every kept pixel sees exactly what it would see in one
whole-image pass, and the tiled result equals the untiled one (up to float summation order).
At the image border both see the same zero padding. Tiles and context are aligned to the net's
pixel-unshuffle factor so that x2 / x1 RRDBNets tile exactly too.

`tile_pad=None` uses the net's own radius (`model.receptive_radius`) capped at MAX_AUTO_TILE_PAD:
exact for every SRVGGNetCompact up to 62 convs (realesr-animevideov3: r = 18) and for x4
RRDBNets up to 4 blocks (the scene-adapted default: r = 64). Big RRDBNets (23 blocks, r = 349)
then tile approximately, as Real-ESRGAN's inference does with its tile_pad of 10; pass
tile_pad=model.receptive_radius for an exact result at a much higher memory cost.

Memory: only one tile (times the batch) is on the device at once; the input and the output
live in host memory, so a 4K frame needs about 3 * 4 * (4K pixels) * (1 + scale^2) bytes of
RAM and a device footprint set by `tile` alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from nerf.errors import ConfigError

DEFAULT_TILE = 256  # input pixels per tile side; 0 runs the whole image in one pass
MAX_AUTO_TILE_PAD = 64  # cap on the automatic tile context, in input pixels
DEFAULT_BATCH = 4  # frames per forward pass in upscale_frames


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _pad_bottom_right(x: Tensor, pad_h: int, pad_w: int) -> Tensor:  # [B, C, H, W]
    """Mirror-pad the bottom and right edges (edge-replicate when the image is too small)."""
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < x.shape[2] and pad_w < x.shape[3] else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def auto_tile_pad(model: nn.Module) -> int:
    """The default tile context for a net: its receptive radius, capped at MAX_AUTO_TILE_PAD."""
    return min(int(model.receptive_radius), MAX_AUTO_TILE_PAD)


def upscale_tensor(
    model: nn.Module,
    x: Tensor,  # [B, C, H, W] float32 in [0, 1], any device
    tile: int = DEFAULT_TILE,
    tile_pad: int | None = None,
    pre_pad: int = 0,
    half: bool = False,
) -> Tensor:  # [B, C, scale*H, scale*W] float32 in [0, 1], on the CPU
    """Run a super-resolution net over a batch, tile by tile.

    Args:
        model: RRDBNet or SRVGGNetCompact (anything with scale, size_multiple and
            receptive_radius attributes).
        x: images, channels first.
        tile: tile side in input pixels; 0 disables tiling.
        tile_pad: context pixels around each tile; None picks auto_tile_pad(model).
        pre_pad: mirror padding added at the bottom/right before inference and cropped after
            (softens the border the net never saw in training).
        half: run in float16 autocast; only on a CUDA device.

    Returns:
        the upscaled batch, clamped to [0, 1].
    """
    if x.ndim != 4:
        raise ValueError(f"upscale_tensor: expected [B, C, H, W], got shape {tuple(x.shape)}")
    device = next(model.parameters()).device
    if half and device.type != "cuda":
        raise ConfigError(f"half=True needs the model on a CUDA device; it is on {device}")
    scale, multiple = int(model.scale), int(model.size_multiple)
    pad = auto_tile_pad(model) if tile_pad is None else tile_pad
    height, width = x.shape[2:]
    x = x.detach().to("cpu", torch.float32)
    x = _pad_bottom_right(x, pre_pad, pre_pad)
    x = _pad_bottom_right(x, _round_up(x.shape[2], multiple) - x.shape[2],
                          _round_up(x.shape[3], multiple) - x.shape[3])

    def run(part: Tensor) -> Tensor:  # [B, C, h, w] -> [B, C, s*h, s*w] on the CPU
        autocast = torch.autocast("cuda", torch.float16) if half else contextlib.nullcontext()
        with torch.no_grad(), autocast:
            out = model(part.to(device, non_blocking=True)).float().clamp_(0.0, 1.0)
        return out.cpu()

    full_h, full_w = x.shape[2:]
    if tile <= 0 or (full_h <= tile and full_w <= tile):
        return run(x)[:, :, : height * scale, : width * scale]
    tile, pad = _round_up(tile, multiple), _round_up(pad, multiple)
    # Every window has the same shape (fewer kernel set-ups, one allocation size): windows that
    # would stick out of the image slide inward, which only adds context on the inner side.
    win_h, win_w = min(tile + 2 * pad, full_h), min(tile + 2 * pad, full_w)
    out = torch.empty(x.shape[0], x.shape[1], full_h * scale, full_w * scale)
    for y0 in range(0, full_h, tile):
        y1 = min(y0 + tile, full_h)
        iy0 = min(max(y0 - pad, 0), full_h - win_h)
        for x0 in range(0, full_w, tile):
            x1 = min(x0 + tile, full_w)
            ix0 = min(max(x0 - pad, 0), full_w - win_w)
            part = run(x[:, :, iy0 : iy0 + win_h, ix0 : ix0 + win_w])
            keep_y = slice((y0 - iy0) * scale, (y1 - iy0) * scale)
            keep_x = slice((x0 - ix0) * scale, (x1 - ix0) * scale)
            out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = part[:, :, keep_y, keep_x]
    return out[:, :, : height * scale, : width * scale]


def _to_batch(model: nn.Module, image: np.ndarray | Tensor) -> tuple[Tensor, bool]:
    """[H, W, C] (C = net channels, or RGB + alpha) -> ([1 or 2, C, H, W], has_alpha)."""
    image = torch.as_tensor(image)
    if image.ndim != 3 or not image.is_floating_point():
        raise ValueError(
            f"expected a float image [H, W, C] in [0, 1], got {image.dtype} {tuple(image.shape)}"
        )
    channels = image.shape[2]
    has_alpha = model.num_in_ch == 3 and channels == 4
    if channels != model.num_in_ch and not has_alpha:
        raise ValueError(f"image has {channels} channels; the net takes {model.num_in_ch}")
    chw = image.to(torch.float32).permute(2, 0, 1)
    if has_alpha:
        # Alpha goes through the same net as a grey image, batched with the colour.
        return torch.stack((chw[:3], chw[3:].expand(3, -1, -1))), True
    return chw[None], False


def _from_batch(out: Tensor, has_alpha: bool) -> np.ndarray:  # [1|2, C, sH, sW] -> [sH, sW, C]
    if has_alpha:
        out = torch.cat((out[0], out[1].mean(0, keepdim=True)))[None]
    return out[0].permute(1, 2, 0).contiguous().numpy()


def upscale_image(
    model: nn.Module,
    image: np.ndarray | Tensor,  # [H, W, 3] (or [H, W, 4] with alpha) float in [0, 1]
    tile: int = DEFAULT_TILE,
    tile_pad: int | None = None,
    pre_pad: int = 0,
    half: bool = False,
) -> np.ndarray:  # [scale*H, scale*W, 3 | 4] float32 in [0, 1]
    """Upscale one image with tiled inference (see the module docstring for exactness).

    Args:
        model: the super-resolution net (from load_sr_weights or train_adapted_sr).
        image: the input; a 4th (alpha) channel is upscaled by the same net as a grey image.
        tile, tile_pad, pre_pad, half: as in upscale_tensor.

    Returns:
        the upscaled image as a numpy array.
    """
    batch, has_alpha = _to_batch(model, image)
    return _from_batch(upscale_tensor(model, batch, tile, tile_pad, pre_pad, half), has_alpha)


def upscale_frames(
    model: nn.Module,
    frames: Iterable[np.ndarray | Tensor],  # each [H, W, 3] float in [0, 1]
    tile: int = DEFAULT_TILE,
    tile_pad: int | None = None,
    pre_pad: int = 0,
    half: bool = False,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = True,
) -> Iterator[np.ndarray]:  # each [scale*H, scale*W, 3] float32
    """Upscale a stream of frames, batching consecutive same-size frames; yields in order.

    Args:
        model: the super-resolution net.
        frames: any iterable (a list, or a generator reading a video); consumed lazily.
        tile, tile_pad, pre_pad, half: as in upscale_tensor.
        batch_size: frames per forward pass.
        progress: show a tqdm bar.

    Returns:
        an iterator over the upscaled frames.
    """
    total = len(frames) if hasattr(frames, "__len__") else None
    bar = tqdm(total=total, desc="upscale", unit="frame", disable=not progress)
    pending: list[Tensor] = []

    def flush() -> Iterator[np.ndarray]:
        out = upscale_tensor(model, torch.cat(pending), tile, tile_pad, pre_pad, half)
        pending.clear()
        for frame in out:
            bar.update(1)
            yield frame.permute(1, 2, 0).contiguous().numpy()

    try:
        for frame in frames:
            batch, has_alpha = _to_batch(model, frame)
            if has_alpha:
                raise ValueError("upscale_frames takes frames without alpha; use upscale_image")
            if pending and pending[0].shape != batch.shape:
                yield from flush()
            pending.append(batch)
            if len(pending) == batch_size:
                yield from flush()
        if pending:
            yield from flush()
    finally:
        bar.close()
