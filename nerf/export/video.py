"""Videos and image sequences of rendered frames, and depth maps made visible.

Frames are uint8 [H, W, 3] or float [H, W, 3] in [0, 1] (numpy arrays or CPU tensors), all of
one size. Videos are H.264 (libx264) in yuv420p, the pixel format every player decodes; yuv420p
subsamples chroma 2x2, so odd widths or heights are padded to even by repeating the last column
or row (edge replication: no black line, the frame is one pixel larger at most). The video is
written to a hidden temporary file and renamed, so an interrupted render leaves no broken mp4.
The index (the `moov` atom) is moved before the frames (ffmpeg's `-movflags +faststart`), so a
browser or a web page plays the video while it downloads instead of after.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np

from nerf.errors import ExportError
from nerf.export.colormap import apply_colormap
from nerf.frames import to_uint8_frame
from nerf.export.mesh_io import ensure_folder

VIDEO_QUALITY = 8  # imageio-ffmpeg quality 0..10 (10 = best); 8 is visually lossless for renders
QUALITY_RANGE = (0, 10)
DEPTH_RANGE_QUANTILES = (0.01, 0.99)  # default near/far: robust to a few outlier pixels


def pad_to_even(frame: np.ndarray) -> np.ndarray:  # [H, W, 3] -> [H + H % 2, W + W % 2, 3]
    """Pad an odd height or width by one replicated edge row or column (yuv420p needs even)."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _temporary(path: Path) -> Path:
    # ffmpeg picks the container from the suffix, so the temporary file keeps it
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def write_video(path: str | Path, frames: Iterable, fps: float, quality: int = VIDEO_QUALITY) -> int:
    """Encode frames to an H.264 mp4 (atomically).

    Args:
        path: target .mp4 file; its folder is created.
        frames: iterable of [H, W, 3] uint8 or float in [0, 1], all one size.
        fps: frames per second.
        quality: imageio-ffmpeg quality, 0..10.

    Returns:
        The number of frames written.
    """
    path = Path(path)
    if fps <= 0:
        raise ExportError(f"{path}: fps must be positive, got {fps}")
    if not QUALITY_RANGE[0] <= quality <= QUALITY_RANGE[1]:
        raise ExportError(f"{path}: video quality must be in {QUALITY_RANGE[0]}..{QUALITY_RANGE[1]}, got {quality}")
    tmp = _temporary(path)
    writer, size, count = None, None, 0
    ensure_folder(path.parent)
    try:
        for frame in frames:
            frame = pad_to_even(to_uint8_frame(frame))
            if writer is None:
                size = frame.shape[:2]
                writer = imageio_ffmpeg.write_frames(
                    str(tmp), (size[1], size[0]), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                    quality=quality, macro_block_size=1, output_params=["-movflags", "+faststart"],
                )
                writer.send(None)  # start the generator
            elif frame.shape[:2] != size:
                raise ExportError(
                    f"{path}: frame {count} is {frame.shape[1]}x{frame.shape[0]} but the video is "
                    f"{size[1]}x{size[0]}"
                )
            writer.send(frame)
            count += 1
        if writer is None:
            raise ExportError(f"{path}: no frames to write")
        writer.close()
        writer = None
        os.replace(tmp, path)
    except OSError as exc:
        raise ExportError(f"{path}: cannot write video ({exc.strerror or exc})") from exc
    finally:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return count


def write_frames(folder: str | Path, frames: Iterable, prefix: str = "frame_") -> list[Path]:
    """Write frames as numbered PNGs `{prefix}00000.png`, ... in `folder` (created).

    Returns:
        The written paths, in order.
    """
    folder = Path(folder)
    paths = []
    ensure_folder(folder)
    try:
        for i, frame in enumerate(frames):
            target = folder / f"{prefix}{i:05d}.png"
            iio.imwrite(target, to_uint8_frame(frame))
            paths.append(target)
    except OSError as exc:
        raise ExportError(f"{folder}: cannot write frames ({exc.strerror or exc})") from exc
    return paths


def colorize_depth(
    depth,  # [H, W] ray distance
    opacity=None,  # [H, W] in [0, 1], or None
    near: float | None = None,
    far: float | None = None,
    colormap: str = "turbo",
) -> np.ndarray:  # [H, W, 3] uint8
    """Depth as a colour image: near -> start of the colour map, far -> its end.

    Without `near`/`far`, the 1st and 99th percentiles of the depths of pixels with opacity
    above 0.5 are used (all pixels when opacity is None). With `opacity`, colours are composited
    over black by opacity, so background stays black instead of showing a meaningless depth.

    Returns:
        [H, W, 3] uint8.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ExportError(f"colorize_depth: depth must be [H, W], got shape {depth.shape}")
    alpha = None if opacity is None else np.asarray(opacity, dtype=np.float32)
    if alpha is not None and alpha.shape != depth.shape:
        raise ExportError(f"colorize_depth: opacity must be {depth.shape}, got {alpha.shape}")
    if near is None or far is None:
        mask = np.isfinite(depth)
        if alpha is not None:
            mask &= alpha > 0.5
        valid = depth[mask]
        lo, hi = np.quantile(valid, DEPTH_RANGE_QUANTILES) if valid.size else (0.0, 1.0)
        near = float(lo) if near is None else near
        far = float(hi) if far is None else far
    scale = far - near if far > near else 1.0
    rgb = apply_colormap(np.nan_to_num((depth - near) / scale, nan=0.0), colormap)
    if alpha is not None:
        rgb = rgb * np.clip(alpha, 0.0, 1.0)[..., None]
    return np.round(rgb * 255.0).astype(np.uint8)
