"""Radiance fields: `field(positions [S,3], directions [S,3]) -> sigmas [S], rgbs [S,3]`."""

from torch import Tensor, nn

from nerf.config import ModelConfig
from nerf.errors import ConfigError

FIELD_KINDS = ("ngp", "vanilla")


def build_field(cfg: ModelConfig, aabb: Tensor) -> nn.Module:  # aabb [2, 3]
    """The field named by `cfg.model` over the scene box."""
    if cfg.model == "ngp":
        from nerf.fields.ngp import NGPField

        return NGPField(aabb, cfg)
    if cfg.model == "vanilla":
        from nerf.fields.vanilla import VanillaNeRF

        return VanillaNeRF(
            aabb, pos_frequencies=cfg.pos_frequencies, dir_frequencies=cfg.dir_frequencies,
            width=cfg.vanilla_width, depth=cfg.vanilla_depth,
        )
    raise ConfigError(f"model = {cfg.model!r} is not a known field; expected one of {FIELD_KINDS}")
