"""Time CPU compositing, forward + backward: the PyTorch reference vs the numba kernels.

    python tools/time_composite_cpu.py [--samples 200000] [--rays 4096] [--repeats 5]

Packed samples spread at random over the rays (about samples/rays per ray), float32, gradients
for sigmas and rgbs (as in training), a loss on rgb, opacity and depth. Each backend is called
once to warm up (numba compiles there, or loads its cache), then timed `--repeats` times; the
median is printed. Not a test: the numbers depend on the machine.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.render.composite import available_backends, composite  # noqa: E402


def make_inputs(n_samples: int, n_rays: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    ray_indices = torch.randint(0, n_rays, (n_samples,), generator=gen).sort().values
    t_starts = 2.0 + 4.0 * torch.rand(n_samples, generator=gen)
    t_ends = t_starts + 0.005 + 0.01 * torch.rand(n_samples, generator=gen)
    return dict(
        t_starts=t_starts,
        t_ends=t_ends,
        ray_indices=ray_indices,
        sigmas=10.0 * torch.rand(n_samples, generator=gen),
        rgbs=torch.rand(n_samples, 3, generator=gen),
        n_rays=n_rays,
        background=torch.rand(3, generator=gen),
    )


def step(inputs: dict, backend: str) -> None:
    sigmas = inputs["sigmas"].detach().requires_grad_(True)
    rgbs = inputs["rgbs"].detach().requires_grad_(True)
    out = composite(**{**inputs, "sigmas": sigmas, "rgbs": rgbs}, backend=backend)
    loss = out.rgb.square().sum() + out.opacity.sum() + 0.1 * out.depth.sum()
    loss.backward()


def time_backend(inputs: dict, backend: str, repeats: int) -> tuple[float, float, float]:
    """(first call incl. compile, median, min) seconds of forward + backward."""
    start = time.perf_counter()
    step(inputs, backend)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(inputs, backend)
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--rays", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    inputs = make_inputs(args.samples, args.rays)
    print(f"S={args.samples} samples over N={args.rays} rays, float32, torch threads {torch.get_num_threads()}")
    results = {}
    for backend in ("torch", "numba"):
        if backend not in available_backends():
            print(f"{backend:6s} unavailable")
            continue
        first, median, best = time_backend(inputs, backend, args.repeats)
        results[backend] = median
        print(f"{backend:6s} fwd+bwd median {median * 1e3:8.2f} ms  min {best * 1e3:8.2f} ms  "
              f"(first call {first * 1e3:8.1f} ms)")
    if "numba" in results:
        import numba

        print(f"numba threading layer {numba.threading_layer()}, {numba.get_num_threads()} threads")
    if len(results) == 2:
        print(f"speed-up numba vs torch: {results['torch'] / results['numba']:.2f}x")


if __name__ == "__main__":
    main()
