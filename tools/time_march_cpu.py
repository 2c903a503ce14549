"""Time CPU ray marching: the PyTorch reference vs the numba kernels, with and without sigma_fn.

    python tools/time_march_cpu.py [--rays 16384] [--resolution 64] [--march-steps 512] [--repeats 5]
                                   [--threads 0]

The scene: a grid over [-1.5, 1.5]^3 (one cascade) made occupied by a solid sphere of radius
0.8 (`OccupancyGrid.update` with a density of 10 inside), `--rays` rays from distance 4 aimed
at the centre with jitter (most hit the sphere), the renderer's step 2 sqrt(3) / march_steps.
With sigma_fn, the density is an opaque sphere (sigma 100 inside, so rays stop a few samples
past the surface) at the default early_stop_eps 1e-4.

Three ways are timed: "torch" (the reference), "numba" (the backend: count/fill kernels without
sigma_fn, the reference's block loop around one kernel per block with it) and, with sigma_fn,
"numba+prune" (every occupied candidate marched to t1 by the kernels, then
`prune_by_transmittance`, the Triton backend's structure). Each is called once to warm up
(numba compiles there, or loads its cache), then timed `--repeats` times; the median is
printed, with the samples returned and the densities sigma_fn was asked for. Not a test: the
numbers depend on the machine.
"""

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.sampling.march import march  # noqa: E402
from nerf.sampling.occupancy import OccupancyGrid  # noqa: E402
from nerf.sampling.packed import PackedSamples, prune_by_transmittance  # noqa: E402

RADIUS = 0.8


def make_scene(n_rays: int, resolution: int, seed: int = 0):
    grid = OccupancyGrid(torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]]), resolution=resolution, cascades=1)
    grid.update(lambda p: (p.norm(dim=-1) < RADIUS).float() * 10.0, warmup=True,
                generator=torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed)
    origins = torch.randn(n_rays, 3, generator=gen)
    origins = 4.0 * origins / origins.norm(dim=-1, keepdim=True)
    directions = -origins / 4.0 + 0.15 * torch.randn(n_rays, 3, generator=gen)
    return grid, origins, directions / directions.norm(dim=-1, keepdim=True)


def dense_sphere(origins, directions, evaluated: list):
    def sigma_fn(t_starts, t_ends, ray_ids):
        evaluated[0] += len(t_starts)
        mid = 0.5 * (t_starts + t_ends)
        return 100.0 * ((origins[ray_ids] + directions[ray_ids] * mid[:, None]).norm(dim=-1) < RADIUS).float()

    return sigma_fn


def numba_then_prune(grid, origins, directions, step, sigma_fn) -> PackedSamples:
    """The alternative: all candidates to t1 from the kernels, then the packed early stop."""
    everything = march(grid, origins, directions, step, backend="numba")
    return prune_by_transmittance(everything.t_starts, everything.t_ends, everything.ray_indices,
                                  everything.n_rays, sigma_fn, 1e-4)


def time_call(fn, repeats: int) -> tuple[float, float, PackedSamples]:
    start = time.perf_counter()
    out = fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rays", type=int, default=16384)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--march-steps", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch and numba threads (0: their defaults)")
    args = parser.parse_args()
    import numba  # noqa: PLC0415

    if args.threads:
        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)

    grid, origins, directions = make_scene(args.rays, args.resolution)
    step = 2.0 * math.sqrt(3.0) / args.march_steps

    print(f"{args.rays} rays, {args.resolution}^3 grid ({float(grid.binaries.float().mean()):.1%} occupied), "
          f"step {step:.5f}; torch threads {torch.get_num_threads()}, numba threads {numba.get_num_threads()}")
    reference = {}
    for with_sigma in (False, True):
        ways = ["torch", "numba"] + (["numba+prune"] if with_sigma else [])
        for way in ways:
            evaluated = [0]
            sigma_fn = dense_sphere(origins, directions, evaluated) if with_sigma else None
            if way == "numba+prune":
                fn = lambda: numba_then_prune(grid, origins, directions, step, sigma_fn)  # noqa: E731
            else:
                fn = lambda: march(grid, origins, directions, step, sigma_fn=sigma_fn, backend=way)  # noqa: E731
            first, median, out = time_call(fn, args.repeats)
            per_call = evaluated[0] // (args.repeats + 1)
            if way == "torch":
                reference[with_sigma] = (median, out)
            ref_median, ref_out = reference[with_sigma]
            same = len(out) == len(ref_out) and torch.equal(out.t_starts, ref_out.t_starts) and torch.equal(
                out.ray_indices, ref_out.ray_indices)
            label = f"{way:12s} {'sigma_fn' if with_sigma else 'no sigma':8s}"
            evals = f"  {per_call:9d} densities" if with_sigma else " " * 21
            print(f"{label} median {median * 1e3:8.2f} ms  (first call {first * 1e3:8.1f} ms)  "
                  f"{len(out):9d} samples{evals}  x{ref_median / median:5.1f} vs torch  "
                  f"{'identical to torch' if same else 'DIFFERS from torch'}")


if __name__ == "__main__":
    main()
