"""Hash-grid backend on tiny-cuda-nn (optional: used only when `tinycudann` imports on CUDA).

tcnn's "Grid"/"Hash" encoding computes exactly the geometry of `nerf.encodings.hashgrid_levels`
and stores its parameters as the same flat vector, so the wrapper hands `HashGrid.params` to the
tcnn module itself: the one parameter trains under any backend and checkpoints move between
them. tcnn computes in its preferred precision (usually float16); outputs are cast to float32
here, at the boundary. Positions are clamped to [0, 1] (tcnn wraps negative coordinates; NaN maps to 0)
and receive no gradient.
"""

import importlib

import torch
from torch import Tensor, nn

from nerf.encodings.hashgrid_levels import HashGridLevels
from nerf.errors import ConfigError


class TcnnHashGrid:
    """Callable wrapper of `tinycudann.Encoding` configured like a `HashGrid`.

    Args:
        levels: level geometry (from `make_levels`) the tcnn encoding must reproduce.
        log2_table_size: log2 T.
        base_resolution: resolution of level 0.
        per_level_scale: growth factor b between levels.

    Raises:
        ConfigError: tinycudann missing, no CUDA device, or a tcnn build whose parameter count
            differs from this geometry (a different grid layout).
    """

    def __init__(self, levels: HashGridLevels, log2_table_size: int, base_resolution: int, per_level_scale: float):
        if not torch.cuda.is_available():
            raise ConfigError("hash grid: backend 'tcnn' needs a CUDA device")
        try:
            tcnn = importlib.import_module("tinycudann")
        except (ImportError, OSError) as error:
            raise ConfigError(f"hash grid: backend 'tcnn' needs tiny-cuda-nn's PyTorch bindings ({error})") from error
        config = {
            "otype": "Grid",
            "type": "Hash",
            "n_levels": levels.n_levels,
            "n_features_per_level": levels.n_features,
            "log2_hashmap_size": log2_table_size,
            "base_resolution": base_resolution,
            "per_level_scale": per_level_scale,
            "interpolation": "Linear",
        }
        self.encoding = tcnn.Encoding(n_input_dims=3, encoding_config=config)
        expected = levels.n_entries * levels.n_features
        if self.encoding.params.numel() != expected:
            raise ConfigError(
                f"hash grid: tiny-cuda-nn allocates {self.encoding.params.numel()} parameters for {config}, "
                f"this toolkit's layout needs {expected}; this tcnn version lays out grids differently, "
                "use backend 'triton' or 'torch'"
            )

    def __call__(
        self,
        positions: Tensor,  # [N, 3] in [0, 1], CUDA
        params: nn.Parameter,  # [E*F] float32, CUDA
    ) -> Tensor:  # [N, L*F] float32
        if not (positions.is_cuda and params.is_cuda):
            raise ConfigError("hash grid: backend 'tcnn' needs CUDA tensors; move the HashGrid and its inputs to CUDA")
        # The tcnn module reads its `params` attribute; pointing it at ours trains ours.
        self.encoding.params = params
        encoded = self.encoding(positions.detach().nan_to_num(0.0).clamp(0.0, 1.0).contiguous())
        return encoded.to(torch.float32)
