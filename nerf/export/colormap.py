"""Colour maps for scalar images (depth, opacity, error maps).

Turbo (Mikhailov, Google 2019) is the map used for depth: perceptually ordered, dark at both
ends, so near and far stay distinguishable in print and on screen. It is evaluated with the
published 5th-degree polynomial approximation (Ruofei Du's GLSL version, Apache-2.0), which
follows the 256-entry lookup table closely in the middle and is slightly darker at both ends;
no table ships with the library.
"""

from __future__ import annotations

import numpy as np

from nerf.errors import ExportError

# Coefficients c0..c5 of r, g, b = sum_k c_k x^k on x in [0, 1] (the published approximation).
_TURBO_COEFFS = np.array(
    [
        [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
        [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
        [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
    ],
    dtype=np.float64,
)

COLORMAPS = ("turbo", "gray")


def turbo(values: np.ndarray) -> np.ndarray:  # [...] -> [..., 3] float32 in [0, 1]
    """Turbo colours of `values` in [0, 1] (values outside are clamped).

    Args:
        values: [...] scalars; 0 maps to dark blue, 0.5 to green, 1 to dark red.

    Returns:
        [..., 3] float32 RGB in [0, 1].
    """
    x = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    powers = np.stack([x**k for k in range(_TURBO_COEFFS.shape[1])], axis=-1)  # [..., 6]
    rgb = powers @ _TURBO_COEFFS.T
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def apply_colormap(values: np.ndarray, name: str = "turbo") -> np.ndarray:  # [...] -> [..., 3]
    """Map scalars in [0, 1] to RGB float32 [..., 3] with the colour map `name` (see COLORMAPS)."""
    if name == "turbo":
        return turbo(values)
    if name == "gray":
        x = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
        return np.repeat(x[..., None], 3, axis=-1)
    raise ExportError(f"colour map: unknown colour map {name!r}; expected one of {COLORMAPS}")
