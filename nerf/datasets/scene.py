"""The one in-memory scene type that every reader returns.

Images of different sizes (cameras whose widths and heights differ: COLMAP's undistorter crops
each image differently, portrait and landscape shots mix) share one zero-padded tensor, so that
training draws pixels from one flat array: image i fills the top-left
`cameras.height[i] x cameras.width[i]` of `images[i]`, and `masks` is False on the padding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from nerf.cameras import Cameras


@dataclass
class Scene:
    """Posed images, normalised into `aabb`, with train/val/test splits.

    `transform` maps original world coordinates to the normalised frame (a similarity
    [[s R, t], [0, 1]]); `cameras` are already in the normalised frame.

    Each image's own size is its camera's (`cameras.width[i]`, `cameras.height[i]`;
    `image_size(i)`). `images` is as large as the largest width and the largest height, and
    `height` / `width` are that padded size; a smaller image fills the top-left corner, the
    rest is zero and masked out of training. The padding costs memory: a mix of portrait and
    landscape images of one shape is stored as squares (4/3 of the pixels for 4:3 photos).
    """

    images: Tensor  # [C, H, W, 3|4] uint8, image i in [i, :height[i], :width[i]], 0 elsewhere
    cameras: Cameras  # C cameras, normalised frame
    splits: dict[str, Tensor]  # "train" | "val" | "test" -> [n] int64 camera indices
    aabb: Tensor  # [2, 3] float32 (min, max) in the normalised frame
    transform: Tensor  # [4, 4] float32 original -> normalised similarity
    background: Tensor | None = None  # [3] colour for RGBA images, None when images are RGB
    near: float | None = None  # normalised units, when the format gives bounds
    far: float | None = None
    unbounded: bool = False  # content may extend to the aabb's edge (real captures)
    masks: Tensor | None = None  # [C, H, W] bool, True = pixel used for training (False on padding)
    image_paths: list[str] = field(default_factory=list)  # one per camera, for messages
    source: Path | None = None
    format: str = ""

    @property
    def height(self) -> int:
        """Height of `images`: the largest image height (every image's when sizes agree)."""
        return self.images.shape[1]

    @property
    def width(self) -> int:
        """Width of `images`: the largest image width (every image's when sizes agree)."""
        return self.images.shape[2]

    def image_size(self, index: int) -> tuple[int, int]:
        """(width, height) of image `index`: its camera's size."""
        return int(self.cameras.width[index]), int(self.cameras.height[index])

    @property
    def sizes_differ(self) -> bool:
        """Whether the images have different sizes (so `images` holds padding)."""
        w, h = self.cameras.width, self.cameras.height
        return len(w) > 0 and bool(((w != w[0]) | (h != h[0])).any())

    @property
    def size_text(self) -> str:
        """`WxH`, or `mixed sizes up to WxH` when the images differ (messages, reports)."""
        size = f"{self.width}x{self.height}"
        return f"mixed sizes up to {size}" if self.sizes_differ else size

    @property
    def has_alpha(self) -> bool:
        return self.images.shape[-1] == 4

    @property
    def render_background(self) -> Tensor:  # [3]
        """The colour renders and RGBA photos are composited on: the scene's, else black."""
        return self.background if self.background is not None else torch.zeros(3)

    def split(self, name: str) -> Tensor:  # [n] int64
        return self.splits[name]

    def image_float(self, index: int, background: Tensor | None = None) -> Tensor:
        """Image `index` at its own size, float32 [h, w, 3] in [0, 1], RGBA composited on
        `background`."""
        w, h = self.image_size(index)
        img = self.images[index, :h, :w].float() / 255.0
        if img.shape[-1] == 4:
            bg = (self.render_background if background is None else background).to(img)
            img = img[..., :3] * img[..., 3:] + bg * (1.0 - img[..., 3:])
        return img

    def summary(self) -> str:
        counts = ", ".join(f"{k} {len(v)}" for k, v in self.splits.items())
        return (
            f"{self.format} scene {self.source}: {len(self.cameras)} images "
            f"{self.size_text} ({counts}), aabb {self.aabb.tolist()}"
        )
