"""Scene contraction (mip-NeRF 360): all of space into a bounded cube, for unbounded captures.

A point x of the normalised frame whose L-infinity norm m = max |x_i| is at most 1 (the content
box [-1, 1]^3, where the object rules put the subject) stays where it is; a point farther out
moves to (2 - 1/m) x / m, on the cube shell of L-infinity radius 2 - 1/m. Everything up to
infinity lands inside [-2, 2]^3, and distance from the content box is compressed as disparity:
the shell between m and 2m takes 1/(2m) of the contracted cube's radius, so far background gets
little of the field's resolution and the content box keeps half of it along each axis.

The L-infinity norm (nerfstudio's choice for hash grids) maps onto a cube, which a hash grid
fills completely; mip-NeRF 360's L2 norm maps onto a ball and would leave the grid's corners
unused. Contraction changes what the field sees, not how rays are marched: the marcher still
steps along straight rays in the normalised frame (through the occupancy grid's cascades, whose
cells double in size outward; nerfacc's recipe for unbounded scenes with an occupancy grid).
"""

from __future__ import annotations

import torch
from torch import Tensor

CONTRACTED_HALF_EXTENT = 2.0  # contract() maps all of space into [-2, 2]^3


def contract(x: Tensor) -> Tensor:  # [..., 3] -> [..., 3] in [-2, 2]^3
    """mip-NeRF 360's contraction with the L-infinity norm (differentiable)."""
    m = x.abs().amax(dim=-1, keepdim=True)
    far = m > 1.0
    m_safe = torch.where(far, m, torch.ones_like(m))
    return torch.where(far, (2.0 - 1.0 / m_safe) * (x / m_safe), x)


def uncontract(y: Tensor) -> Tensor:  # [..., 3] in (-2, 2)^3 -> [..., 3]
    """The inverse of `contract` on the open cube (-2, 2)^3 (its boundary is at infinity)."""
    n = y.abs().amax(dim=-1, keepdim=True)
    if bool((n >= CONTRACTED_HALF_EXTENT).any()):
        raise ValueError("uncontract: points on or beyond the cube of half-size 2 lie at infinity")
    far = n > 1.0
    n_safe = torch.where(far, n, torch.ones_like(n))
    m = 1.0 / (2.0 - n_safe)  # the original L-infinity norm
    return torch.where(far, y * (m / n_safe), y)
