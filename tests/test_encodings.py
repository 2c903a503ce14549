"""Tests of the frequency encoding and the real spherical harmonics."""

import math

import numpy as np
import pytest
import torch

from nerf.encodings import FrequencyEncoding, SphericalHarmonics, spherical_harmonics
from nerf.errors import ConfigError

# float32 sin/cos of arguments up to 2^3 * 2: a few ulps of 1.
FREQ_TOL = dict(rtol=0.0, atol=1e-6)
# The product quadrature below integrates these polynomials exactly; what remains is float64
# rounding over a few hundred terms.
QUADRATURE_TOL = 1e-12
# float64 polynomial evaluation against scipy's float64 Legendre recursions.
SH_REFERENCE_TOL = dict(rtol=1e-10, atol=1e-12)


def test_frequency_encoding_values_match_the_documented_formula():
    x = torch.tensor([[0.5, -1.0, 2.0]])
    enc = FrequencyEncoding(3, 3, include_input=True)
    expected = [0.5, -1.0, 2.0]
    for k in range(3):
        expected += [math.sin(2.0**k * v) for v in (0.5, -1.0, 2.0)]
        expected += [math.cos(2.0**k * v) for v in (0.5, -1.0, 2.0)]
    torch.testing.assert_close(enc(x), torch.tensor([expected]), **FREQ_TOL)


def test_frequency_encoding_shapes_and_input_flag():
    enc = FrequencyEncoding(3, 10, include_input=False)
    assert enc.out_dim == 60
    x = torch.rand(4, 5, 3)
    out = enc(x)
    assert out.shape == (4, 5, 60)
    with_input = FrequencyEncoding(3, 10, include_input=True)
    assert with_input.out_dim == 63
    torch.testing.assert_close(with_input(x), torch.cat([x, out], dim=-1))
    assert FrequencyEncoding(2, 0, include_input=True)(x[..., :2]).shape == (4, 5, 2)


def test_frequency_encoding_rejects_bad_configs_and_inputs():
    with pytest.raises(ConfigError):
        FrequencyEncoding(3, 0, include_input=False)
    with pytest.raises(ConfigError):
        FrequencyEncoding(0, 4)
    with pytest.raises(ValueError):
        FrequencyEncoding(3, 4)(torch.zeros(2, 4))


def _sphere_quadrature(n_polar: int, n_azimuth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre in cos(theta) x uniform azimuth: exact for polynomials of low degree."""
    z, wz = np.polynomial.legendre.leggauss(n_polar)
    phi = 2.0 * np.pi * np.arange(n_azimuth) / n_azimuth
    zz, pp = np.meshgrid(z, phi, indexing="ij")
    s = np.sqrt(1.0 - zz**2)
    dirs = np.stack([s * np.cos(pp), s * np.sin(pp), zz], axis=-1).reshape(-1, 3)
    weights = (wz[:, None] * np.full(n_azimuth, 2.0 * np.pi / n_azimuth)[None, :]).reshape(-1)
    return torch.from_numpy(dirs), torch.from_numpy(weights)


@pytest.mark.parametrize("degree", [1, 2, 3, 4, 5])
def test_sh_is_orthonormal_on_the_sphere(degree):
    # Products of bands <= 4 are polynomials of degree <= 8: 10 Legendre nodes (exact to degree
    # 19 in z) and 20 azimuths (exact for frequencies below 20) integrate them exactly.
    dirs, weights = _sphere_quadrature(10, 20)
    y = SphericalHarmonics(degree)(dirs)  # [Q, d^2] float64
    gram = (y * weights[:, None]).T @ y
    assert y.shape[1] == degree**2
    assert torch.allclose(gram, torch.eye(degree**2, dtype=torch.float64), rtol=0.0, atol=QUADRATURE_TOL)


def test_sh_low_order_terms_match_closed_forms():
    d = torch.nn.functional.normalize(torch.randn(50, 3, dtype=torch.float64), dim=-1)
    x, y, z = d.unbind(-1)
    out = spherical_harmonics(d, 3)
    c1 = math.sqrt(3.0 / (4.0 * math.pi))
    expected = [
        torch.full_like(x, 0.5 / math.sqrt(math.pi)),
        -c1 * y,
        c1 * z,
        -c1 * x,
        math.sqrt(15.0 / (4.0 * math.pi)) * x * y,
        -math.sqrt(15.0 / (4.0 * math.pi)) * y * z,
        math.sqrt(5.0 / (16.0 * math.pi)) * (3.0 * z * z - 1.0),
        -math.sqrt(15.0 / (4.0 * math.pi)) * x * z,
        math.sqrt(15.0 / (16.0 * math.pi)) * (x * x - y * y),
    ]
    torch.testing.assert_close(out, torch.stack(expected, dim=-1), **SH_REFERENCE_TOL)


def test_sh_matches_scipy_complex_harmonics():
    special = pytest.importorskip("scipy.special")
    d = torch.nn.functional.normalize(torch.randn(64, 3, dtype=torch.float64), dim=-1)
    polar = np.arccos(np.clip(d[:, 2].numpy(), -1.0, 1.0))
    azimuth = np.arctan2(d[:, 1].numpy(), d[:, 0].numpy())
    columns = []
    for band in range(5):
        for m in range(-band, band + 1):
            ylm = special.sph_harm_y(band, abs(m), polar, azimuth)  # Condon-Shortley phase included
            if m < 0:
                columns.append(math.sqrt(2.0) * ylm.imag)
            elif m == 0:
                columns.append(ylm.real)
            else:
                columns.append(math.sqrt(2.0) * ylm.real)
    expected = torch.from_numpy(np.stack(columns, axis=-1))
    torch.testing.assert_close(SphericalHarmonics(5)(d), expected, **SH_REFERENCE_TOL)


def test_sh_degrees_are_prefixes_and_shapes():
    d = torch.nn.functional.normalize(torch.randn(2, 7, 3), dim=-1)
    full = SphericalHarmonics(5)(d)
    assert full.shape == (2, 7, 25) and full.dtype == torch.float32
    for degree in range(1, 5):
        enc = SphericalHarmonics(degree)
        assert enc.out_dim == degree**2
        torch.testing.assert_close(enc(d), full[..., : degree**2], rtol=0.0, atol=0.0)


def test_sh_rejects_bad_degree_and_shape():
    for degree in (0, 6):
        with pytest.raises(ConfigError):
            SphericalHarmonics(degree)
    with pytest.raises(ValueError):
        SphericalHarmonics(4)(torch.zeros(5, 2))
