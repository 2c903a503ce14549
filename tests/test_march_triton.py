"""The Triton marching kernels called directly (`march_triton`): a hand-built case and input checks.

Comparisons with the PyTorch reference go through the dispatcher, in tests/test_march.py. On
CPU the kernels run in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1).
"""

import numpy as np
import pytest
import torch

from nerf import backends
from nerf.sampling.occupancy import OccupancyGrid

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if not backends.usable("triton", DEVICE):
    pytest.skip(f"triton cannot run on {DEVICE} tensors here", allow_module_level=True)
march_triton = pytest.importorskip("nerf.sampling.march_triton").march_triton

RES = 16
STEP = 0.02


def test_single_cell_hand_computed():
    """One occupied cell x in [0, 1/8), ray along +x through its centre: analytic samples."""
    grid = OccupancyGrid(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), resolution=RES, cascades=1)
    binaries = torch.zeros(1, RES**3, dtype=torch.bool)
    binaries[0, 8 * RES * RES + 8 * RES + 8] = True
    grid.binaries = binaries
    grid = grid.to(DEVICE)
    origins = torch.tensor([[-2.0, 0.0625, 0.0625], [-2.0, 0.0625, 0.0625]], device=DEVICE)
    directions = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], device=DEVICE)
    step, t0 = STEP, 1.803
    t0s, t1s = torch.tensor([t0, 2.5], device=DEVICE), torch.tensor([2.4, 2.4], device=DEVICE)
    t_starts, t_ends, ray_indices = (x.cpu() for x in march_triton(grid, origins, directions, t0s, t1s, step))
    # midpoints t0 + step (i + 1/2) inside x + 2 in [2, 2.125): i = 10 .. 15; ray 1 has t1 < t0
    expected = t0 + step * np.arange(10, 16)
    np.testing.assert_allclose(t_starts.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose((t_ends - t_starts).numpy(), step, rtol=1e-3)
    assert ray_indices.tolist() == [0] * len(expected)


def test_input_checks():
    grid = OccupancyGrid(torch.tensor([[-2.0, -2, -2], [2, 2, 2]]), resolution=RES, cascades=2).to(DEVICE)
    origins = torch.tensor([[-3.0, 0.0, 0.0]], device=DEVICE).repeat(4, 1)
    directions = torch.tensor([[1.0, 0.0, 0.0]], device=DEVICE).repeat(4, 1)
    zeros, ones = torch.zeros(4, device=DEVICE), torch.ones(4, device=DEVICE)
    with pytest.raises(ValueError, match="t1 must have shape"):
        march_triton(grid, origins, directions, zeros, zeros[:3], STEP)
    with pytest.raises(ValueError, match="step must be positive"):
        march_triton(grid, origins, directions, zeros, ones, 0.0)
    with pytest.raises(ValueError, match="bitfield must be uint8"):
        march_triton(grid, origins, directions, zeros, ones, STEP, bitfield=grid.binaries)
    with pytest.raises(ValueError, match="t0 is on cpu"):
        march_triton(grid.to("meta"), origins.to("meta"), directions.to("meta"), zeros.cpu(), ones.to("meta"), STEP)
