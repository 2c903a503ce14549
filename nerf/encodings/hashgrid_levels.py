"""Level geometry of the multiresolution hash grid, shared by every backend.

We follow tiny-cuda-nn's `GridEncodingTemplated` (include/tiny-cuda-nn/encodings/grid.h) exactly,
so that one parameter vector means the same field under the torch, Triton and tcnn backends:

- per-level growth b = exp((ln max_resolution - ln base_resolution) / (L - 1)), passed to tcnn as
  `per_level_scale`;
- level l scales a position x in [0, 1] by s_l = base * b^l - 1, evaluated in float32 as tcnn
  does (`exp2f(l * log2f(b)) * base - 1`), and adds 0.5: p = x * s_l + 0.5. The 0.5 offset
  staggers the levels so that their vertices do not align (instant-ngp paper, appendix A).
  The cell is floor(p) and the trilinear weights come from frac(p);
- a level has R_l = ceil(s_l) + 1 vertices per axis. Its table holds min(T, R_l^3 rounded up
  to a multiple of 8) entries. When that is the dense size (R_l^3 <= T) the vertex (i, j, k)
  lives at entry (i + j R_l + k R_l^2) mod size ("dense"); otherwise at
  (i * 1 xor j * 2654435761 xor k * 805459861) mod T ("hashed", 32-bit products). With the 0.5
  offset the upper corner of a cell can be vertex R_l, which wraps around in a dense level;
  tcnn accepts this and so do we;
- the levels are stored one after the other in one flat table [E, F] (E = sum of the sizes),
  the layout of tcnn's parameter vector, so `params.view(E, F)` is the table.

Because the resolution grows with l, the dense levels are a prefix of the level list.
"""

import math
from dataclasses import dataclass

import numpy as np

from nerf.errors import ConfigError

# instant-ngp's "coherent prime" hash: 1 for x keeps neighbouring x in neighbouring entries.
HASH_PRIMES = (1, 2654435761, 805459861)


@dataclass(frozen=True)
class HashGridLevels:
    """Geometry of the L levels of a hash grid (see the module docstring for the formulas)."""

    scales: tuple[float, ...]  # [L] s_l (exact float32 values): p = x * s_l + 0.5
    resolutions: tuple[int, ...]  # [L] R_l, vertices per axis
    table_sizes: tuple[int, ...]  # [L] entries of level l
    offsets: tuple[int, ...]  # [L + 1] first entry of level l in the flat table; last = E
    hashed: tuple[bool, ...]  # [L] spatial hash (True) or dense indexing (False)
    n_features: int  # F, features per entry

    @property
    def n_levels(self) -> int:
        return len(self.scales)

    @property
    def n_entries(self) -> int:
        """E, the number of rows of the flat table."""
        return self.offsets[-1]


def per_level_scale(base_resolution: int, max_resolution: int, n_levels: int) -> float:
    """Growth factor b between consecutive levels so that level L-1 reaches max_resolution.

    Args:
        base_resolution: resolution of level 0.
        max_resolution: resolution of level L-1 (>= base_resolution).
        n_levels: L >= 1; a single level has b = 1.

    Returns:
        b = exp((ln max - ln base) / (L - 1)).
    """
    if n_levels == 1:
        return 1.0
    return math.exp((math.log(max_resolution) - math.log(base_resolution)) / (n_levels - 1))


def make_levels(
    n_levels: int,
    n_features: int,
    log2_table_size: int,
    base_resolution: int,
    max_resolution: int,
) -> HashGridLevels:
    """Compute the level geometry of a hash grid, as tiny-cuda-nn does.

    Args:
        n_levels: L, number of levels (1..32).
        n_features: F, features per entry (1, 2, 4 or 8, tcnn's choices).
        log2_table_size: log2 T, the maximum entries of one level (4..30).
        base_resolution: resolution of level 0 (>= 2).
        max_resolution: resolution of the finest level (>= base_resolution).

    Returns:
        HashGridLevels.

    Raises:
        ConfigError: a parameter outside the ranges above.
    """
    if not 1 <= n_levels <= 32:
        raise ConfigError(f"hash grid: n_levels must be in 1..32, got {n_levels}")
    if n_features not in (1, 2, 4, 8):
        raise ConfigError(f"hash grid: n_features must be 1, 2, 4 or 8, got {n_features}")
    if not 4 <= log2_table_size <= 30:
        raise ConfigError(f"hash grid: log2_table_size must be in 4..30, got {log2_table_size}")
    if base_resolution < 2 or max_resolution < base_resolution:
        raise ConfigError(
            "hash grid: need 2 <= base_resolution <= max_resolution, got "
            f"base_resolution={base_resolution}, max_resolution={max_resolution}"
        )
    table_size = 1 << log2_table_size
    # tcnn receives b as a JSON float (float32) and evaluates the scales in float32.
    b = np.float32(per_level_scale(base_resolution, max_resolution, n_levels))
    log2_b = np.log2(b)
    one = np.float32(1.0)
    scales, resolutions, sizes, offsets, hashed = [], [], [], [0], []
    for level in range(n_levels):
        scale = np.exp2(np.float32(level) * log2_b) * np.float32(base_resolution) - one
        resolution = int(math.ceil(float(scale))) + 1
        dense_size = -(-(resolution**3) // 8) * 8
        size = min(dense_size, table_size)
        scales.append(float(scale))
        resolutions.append(resolution)
        sizes.append(size)
        offsets.append(offsets[-1] + size)
        hashed.append(dense_size > table_size)
    return HashGridLevels(
        scales=tuple(scales),
        resolutions=tuple(resolutions),
        table_sizes=tuple(sizes),
        offsets=tuple(offsets),
        hashed=tuple(hashed),
        n_features=n_features,
    )
