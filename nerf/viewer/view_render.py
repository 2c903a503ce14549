"""One viewer frame: the inference path (Renderer.render_image, no gradients) and what the
browser shows of it.

A browser camera can be anywhere, so frames are rendered without the training cameras' near and
far bounds (Blender scenes: 2 to 6, which would cut the field off for a camera farther back):
rays run through the whole scene box (`free_view`).

The browser composites the frame behind its own 3D objects (frustums, boxes) with a depth map
in view-space z (distance along the optical axis), not the renderer's distance along the unit
ray; pixels that hit nothing are sent at FAR_DEPTH so that every object stays in front of them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nerf.cameras import Cameras
from nerf.export.video import colorize_depth
from nerf.frames import to_uint8_frame
from nerf.render.renderer import Renderer

OUTPUTS = ("rgb", "depth", "opacity")
HIT_OPACITY = 0.5  # a pixel with at least this opacity composites at its depth
FAR_DEPTH = 1e3  # view-space z of pixels that hit nothing (beyond the browser's depth range)


@dataclass
class Frame:
    image: np.ndarray  # [H, W, 3] uint8, what the browser shows
    depth: np.ndarray  # [H, W] float32 view-space z, for compositing with the 3D objects


def free_view(renderer: Renderer) -> Renderer:
    """`renderer` without near and far bounds: a shallow copy sharing its field and grid."""
    view = copy.copy(renderer)
    view.near = view.far = None
    return view


@torch.no_grad()
def render_frame(
    renderer: Renderer,
    cameras: Cameras,  # one camera, on the renderer's device
    background: Tensor,  # [3]
    output: str,  # rgb | depth | opacity
    chunk: int,
) -> Frame:
    """Render camera 0 of `cameras` and turn the `output` kind into an 8-bit frame."""
    if output not in OUTPUTS:
        raise ValueError(f"render_frame: output {output!r}; expected one of {OUTPUTS}")
    img = free_view(renderer).render_image(cameras, 0, background, chunk)
    opacity = img["opacity"].float().cpu().numpy()
    depth = img["depth"].float().cpu().numpy()
    if output == "rgb":
        image = to_uint8_frame(img["rgb"].float().cpu().numpy())
    elif output == "depth":
        image = colorize_depth(depth, opacity)
    else:
        image = to_uint8_frame(np.repeat(opacity[..., None], 3, axis=-1))
    return Frame(image, view_z(cameras, depth, opacity))


def view_z(
    cameras: Cameras,  # one camera
    depth: np.ndarray,  # [H, W] distance along unit rays
    opacity: np.ndarray,  # [H, W]
) -> np.ndarray:  # [H, W] float32
    """Distance along the optical axis of each pixel's expected hit (FAR_DEPTH where none)."""
    _, directions = cameras.image_rays(0)
    forward = cameras.c2w[0, :3, 2]
    cos = (directions @ forward).float().cpu().numpy()
    return np.where(opacity >= HIT_OPACITY, depth * cos, FAR_DEPTH).astype(np.float32)
