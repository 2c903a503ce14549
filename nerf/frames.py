"""Float images <-> 8-bit frames: the one conversion every image and video writer uses."""

from __future__ import annotations

import numpy as np

from nerf.errors import ExportError


def to_uint8_frame(frame) -> np.ndarray:  # [H, W, 3] uint8
    """A frame as uint8 [H, W, 3]; floats are taken as [0, 1], clamped and rounded."""
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ExportError(f"video frame must be [H, W, 3], got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    return np.round(np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
