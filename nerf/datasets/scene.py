"""The one in-memory scene type that every reader returns."""

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
    """

    images: Tensor  # [C, H, W, 3|4] uint8
    cameras: Cameras  # C cameras, normalised frame
    splits: dict[str, Tensor]  # "train" | "val" | "test" -> [n] int64 camera indices
    aabb: Tensor  # [2, 3] float32 (min, max) in the normalised frame
    transform: Tensor  # [4, 4] float32 original -> normalised similarity
    background: Tensor | None = None  # [3] colour for RGBA images, None when images are RGB
    near: float | None = None  # normalised units, when the format gives bounds
    far: float | None = None
    unbounded: bool = False  # content may extend to the aabb's edge (real captures)
    masks: Tensor | None = None  # [C, H, W] bool, True = pixel used for training
    image_paths: list[str] = field(default_factory=list)  # one per camera, for messages
    source: Path | None = None
    format: str = ""

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

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
        """Image `index` as float32 [H, W, 3] in [0, 1], RGBA composited on `background`."""
        img = self.images[index].float() / 255.0
        if img.shape[-1] == 4:
            bg = (self.render_background if background is None else background).to(img)
            img = img[..., :3] * img[..., 3:] + bg * (1.0 - img[..., 3:])
        return img

    def summary(self) -> str:
        counts = ", ".join(f"{k} {len(v)}" for k, v in self.splits.items())
        return (
            f"{self.format} scene {self.source}: {len(self.cameras)} images "
            f"{self.width}x{self.height} ({counts}), aabb {self.aabb.tolist()}"
        )
