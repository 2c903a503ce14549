"""Real spherical harmonics of unit directions (the view-direction encoding of instant-ngp).

`degree` counts bands, as tiny-cuda-nn does: degree d gives the d^2 functions of bands
l = 0 .. d-1 (instant-ngp uses degree 4, 16 functions). Supported: degree 1..5.

Convention: orthonormal on the unit sphere (the integral of Y_i Y_j over the sphere is the
Kronecker delta), with the Condon-Shortley phase kept, ordered by band and then m = -l .. l:

    Y_l^m (real) = sqrt(2) Im(Y_l^|m|)  for m < 0,   Y_l^0,   sqrt(2) Re(Y_l^m)  for m > 0

where Y_l^m is the complex harmonic (with the (-1)^m phase) in the polar angle from +z. These
are the signs of tcnn's and Plenoxels' polynomials, e.g. Y_1 = (-C1 y, C1 z, -C1 x). The
polynomials below are those functions written in x, y, z of a unit vector; inputs are not
renormalised, so callers pass unit directions.
"""

import torch
from torch import Tensor, nn

from nerf.errors import ConfigError

MAX_DEGREE = 5

# Normalisation constants sqrt((2l+1)/(4 pi) (l-|m|)!/(l+|m|)!) (times sqrt 2 for m != 0),
# merged with the integer coefficients of each polynomial.
_C0 = 0.28209479177387814  # 1 / (2 sqrt(pi))
_C1 = 0.4886025119029199  # sqrt(3 / (4 pi))
_C2 = (1.0925484305920792, 0.31539156525252005, 0.5462742152960396)
_C3 = (0.5900435899266435, 2.890611442640554, 0.4570457994644658, 0.3731763325901154, 1.445305721320277)
_C4 = (
    2.5033429417967046,
    1.7701307697799304,
    0.9461746957575601,
    0.6690465435572892,
    0.10578554691520431,
    0.47308734787878004,
    0.6258357354491761,
)


def spherical_harmonics(
    directions: Tensor,  # [..., 3] unit vectors
    degree: int,
) -> Tensor:  # [..., degree^2]
    """Evaluate the real SH basis of the module docstring.

    Args:
        directions: unit direction vectors.
        degree: number of bands, 1..5.

    Returns:
        The degree^2 basis values, band by band, m = -l .. l within a band.
    """
    if not 1 <= degree <= MAX_DEGREE:
        raise ConfigError(f"spherical harmonics: degree must be in 1..{MAX_DEGREE}, got {degree}")
    x, y, z = directions.unbind(-1)
    out = [x.new_full(x.shape, _C0)]
    if degree > 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree > 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            _C2[0] * x * y,
            -_C2[0] * y * z,
            _C2[1] * (3.0 * zz - 1.0),
            -_C2[0] * x * z,
            _C2[2] * (xx - yy),
        ]
    if degree > 3:
        out += [
            -_C3[0] * y * (3.0 * xx - yy),
            _C3[1] * x * y * z,
            -_C3[2] * y * (5.0 * zz - 1.0),
            _C3[3] * z * (5.0 * zz - 3.0),
            -_C3[2] * x * (5.0 * zz - 1.0),
            _C3[4] * z * (xx - yy),
            -_C3[0] * x * (xx - 3.0 * yy),
        ]
    if degree > 4:
        out += [
            _C4[0] * x * y * (xx - yy),
            -_C4[1] * y * z * (3.0 * xx - yy),
            _C4[2] * x * y * (7.0 * zz - 1.0),
            -_C4[3] * y * z * (7.0 * zz - 3.0),
            _C4[4] * (35.0 * zz * zz - 30.0 * zz + 3.0),
            -_C4[3] * x * z * (7.0 * zz - 3.0),
            _C4[5] * (xx - yy) * (7.0 * zz - 1.0),
            -_C4[1] * x * z * (xx - 3.0 * yy),
            _C4[6] * (xx * (xx - 3.0 * yy) - yy * (3.0 * xx - yy)),
        ]
    return torch.stack(out, dim=-1)


class SphericalHarmonics(nn.Module):
    """Real SH encoding of unit directions: [..., 3] -> [..., degree^2] (see the module docstring).

    Args:
        degree: number of bands, 1..5 (instant-ngp: 4).
    """

    def __init__(self, degree: int = 4):
        super().__init__()
        if not 1 <= degree <= MAX_DEGREE:
            raise ConfigError(f"spherical harmonics: degree must be in 1..{MAX_DEGREE}, got {degree}")
        self.degree = degree

    @property
    def out_dim(self) -> int:
        return self.degree**2

    def forward(self, directions: Tensor) -> Tensor:  # [..., 3] -> [..., degree^2]
        if directions.shape[-1] != 3:
            raise ValueError(f"SphericalHarmonics expects directions [..., 3], got {tuple(directions.shape)}")
        return spherical_harmonics(directions, self.degree)

    def extra_repr(self) -> str:
        return f"degree={self.degree}"
