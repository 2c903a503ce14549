"""Radiance fields: `field(positions [S,3], directions [S,3]) -> sigmas [S], rgbs [S,3]`.

Every field implements `nerf.fields.protocol.RadianceField`.
"""

from torch import Tensor

from nerf.config import ModelConfig
from nerf.errors import ConfigError
from nerf.fields.protocol import SAMPLING_KINDS, RadianceField

__all__ = ["FIELD_KINDS", "SAMPLING_KINDS", "RadianceField", "build_field"]

FIELD_KINDS = ("ngp", "vanilla")


def build_field(cfg: ModelConfig, aabb: Tensor, n_images: int = 0) -> RadianceField:  # aabb [2, 3]
    """The field named by `cfg.model` over the scene box; `n_images` training images (the
    number of appearance embeddings, when `cfg.appearance_dim` > 0)."""
    if cfg.model == "ngp":
        from nerf.fields.ngp import NGPField

        return NGPField(aabb, cfg, n_images)
    if cfg.appearance_dim > 0 or cfg.contraction != "none":
        raise ConfigError(f"model = {cfg.model}: appearance_dim and contraction need model = ngp")
    if cfg.model == "vanilla":
        from nerf.fields.vanilla import VanillaNeRF

        return VanillaNeRF(
            aabb, pos_frequencies=cfg.pos_frequencies, dir_frequencies=cfg.dir_frequencies,
            width=cfg.vanilla_width, depth=cfg.vanilla_depth,
        )
    raise ConfigError(f"model = {cfg.model!r} is not a known field; expected one of {FIELD_KINDS}")
