"""Time CPU ray marching: the PyTorch reference vs the numba kernels, with and without sigma_fn.

    python tools/time_march_cpu.py [--case all|sphere|view|train] [--rays 16384] [--resolution 64]
                                   [--march_steps 512] [--cone_angle 0] [--repeats 5] [--threads 0]
                                   [--baseline FILE]

Three scenes (`--case`), all in a grid over [-1.5, 1.5]^3 at the renderer's step
2 sqrt(3) / march_steps, early_stop_eps 1e-4:

  sphere  one cascade made occupied by a solid sphere of radius 0.8 (`OccupancyGrid.update`
          with a density of 10 inside), `--rays` rays from distance 4 aimed at the centre with
          jitter (most hit the sphere); with sigma_fn an opaque sphere (sigma 100 inside, so rays
          stop a few samples past the surface), densities only. Timed without and with sigma_fn.
  view    close to rendering a trained lego view: the default 2 cascades, occupied cells a
          shell 0.45 < |x| < 0.6 plus 0.2% of all cells at random ("floaters", so the box of
          occupied cells is nearly the whole box and most steps lie in empty cells); about 9%
          of the cells occupied. One 200 x 200 pinhole camera at distance 4 (lego's field of
          view), 40k rays. sigma_fn is an inference pass: density 30 in the shell (a ray loses
          ~99% of its light through one wall, so many rays cross both walls), 0 elsewhere, and
          a payload of 3 floats per sample (a colour). Timed with sigma_fn.
  train   the view scene seen as in a training step: 2304 rays through random pixels of
          random cameras on the sphere of radius 4, stratified starts, sigma_fn returning
          densities only. Timed with sigma_fn.

The ways timed: "torch" (the reference), "numba" (the backend) and, for the sphere scene with
sigma_fn, "numba+prune" (every occupied candidate marched to t1 by the kernels without
sigma_fn, then `prune_by_transmittance`, the Triton backend's structure). `--baseline FILE`
adds "baseline": another version of nerf/sampling/march_numba.py (e.g. a copy saved before a
change) run through the same dispatcher, to compare two versions in one process. Each way is
called once to warm up (numba compiles there, or loads its cache), then timed `--repeats` times;
the median is printed, with the samples returned, the densities sigma_fn was asked for and its
number of calls per march, and how the samples compare with torch's ("identical", or how many
(ray, t_start) pairs only one of the two returned). Not a test: the numbers depend on the
machine; check that nothing else runs on it (`uptime`).
"""

import contextlib
import importlib.util
import math
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.cli import CommandParser, run_command  # noqa: E402
from nerf.errors import ConfigError  # noqa: E402
from nerf.sampling import march as march_module  # noqa: E402
from nerf.sampling.march import march  # noqa: E402
from nerf.sampling.occupancy import OccupancyGrid  # noqa: E402
from nerf.sampling.packed import PackedSamples, prune_by_transmittance  # noqa: E402

RADIUS = 0.8
SHELL = (0.45, 0.6)  # the view scene's occupied shell
SHELL_SIGMA = 30.0
FLOATERS = 0.002  # fraction of cells occupied at random in the view scene
LEGO_FOV_X = 0.6911112070083618  # camera_angle_x of the lego scene
EPS = 1e-4


def make_scene(n_rays: int, resolution: int, seed: int = 0):
    grid = OccupancyGrid(torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]]), resolution=resolution, cascades=1)
    grid.update(lambda p: (p.norm(dim=-1) < RADIUS).float() * 10.0, warmup=True,
                generator=torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed)
    origins = torch.randn(n_rays, 3, generator=gen)
    origins = 4.0 * origins / origins.norm(dim=-1, keepdim=True)
    directions = -origins / 4.0 + 0.15 * torch.randn(n_rays, 3, generator=gen)
    return grid, origins, directions / directions.norm(dim=-1, keepdim=True)


def in_shell(points):
    r = points.norm(dim=-1)
    return (r > SHELL[0]) & (r < SHELL[1])


def shell_grid(resolution: int, seed: int = 0) -> OccupancyGrid:
    """The view scene's grid: a shell of occupied cells plus random floaters, 2 cascades."""
    grid = OccupancyGrid(torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]]), resolution=resolution)
    grid.update(lambda p: in_shell(p).float() * 10.0, warmup=True, generator=torch.Generator().manual_seed(seed))
    floaters = torch.rand(grid.binaries.shape, generator=torch.Generator().manual_seed(seed + 1)) < FLOATERS
    grid.binaries = grid.binaries | floaters
    grid._refresh_occupied_box()
    return grid


def look_at_rays(position, width: int, fov_x: float = LEGO_FOV_X):
    """[width^2, 3] rays of a square pinhole camera at `position` looking at the origin (z up)."""
    forward = -position / position.norm()
    right = torch.linalg.cross(forward, torch.tensor([0.0, 0.0, 1.0]))
    right = right / right.norm()
    up = torch.linalg.cross(right, forward)
    focal = 0.5 * width / math.tan(0.5 * fov_x)
    pix = (torch.arange(width, dtype=torch.float32) + 0.5 - 0.5 * width) / focal
    v, u = torch.meshgrid(pix, pix, indexing="ij")
    directions = forward + u.reshape(-1, 1) * right - v.reshape(-1, 1) * up
    directions = directions / directions.norm(dim=-1, keepdim=True)
    return position.expand_as(directions).contiguous(), directions


def view_rays(width: int = 200):
    return look_at_rays(4.0 * torch.nn.functional.normalize(torch.tensor([0.8, -0.6, 0.5]), dim=0), width)


def train_rays(n_rays: int = 2304, width: int = 200, cameras: int = 64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    positions = torch.nn.functional.normalize(torch.randn(cameras, 3, generator=gen), dim=-1) * 4.0
    camera = torch.randint(0, cameras, (n_rays,), generator=gen)
    pixel = torch.randint(0, width * width, (n_rays,), generator=gen)
    origins, directions = torch.empty(n_rays, 3), torch.empty(n_rays, 3)
    for c in camera.unique().tolist():
        o, d = look_at_rays(positions[c], width)
        sel = camera == c
        origins[sel], directions[sel] = o[pixel[sel]], d[pixel[sel]]
    return origins, directions


class Counter:
    def __init__(self):
        self.densities = self.calls = 0

    def add(self, n: int) -> None:
        self.densities += n
        self.calls += 1


def dense_sphere(origins, directions, counter: Counter):
    def sigma_fn(t_starts, t_ends, ray_ids):
        counter.add(len(t_starts))
        mid = 0.5 * (t_starts + t_ends)
        return 100.0 * ((origins[ray_ids] + directions[ray_ids] * mid[:, None]).norm(dim=-1) < RADIUS).float()

    return sigma_fn


def shell_field(origins, directions, counter: Counter, payload: bool):
    """Density SHELL_SIGMA in the shell, 0 elsewhere; with `payload` a colour of 3 floats too."""

    def sigma_fn(t_starts, t_ends, ray_ids):
        counter.add(len(t_starts))
        mid = 0.5 * (t_starts + t_ends)
        points = origins[ray_ids] + directions[ray_ids] * mid[:, None]
        sigma = SHELL_SIGMA * in_shell(points).float()
        return (sigma, (0.5 + 0.3 * points).clamp(0.0, 1.0)) if payload else sigma

    return sigma_fn


def numba_then_prune(grid, origins, directions, step, cone_angle, sigma_fn) -> PackedSamples:
    """The alternative: all candidates to t1 from the kernels, then the packed early stop."""
    everything = march(grid, origins, directions, step, cone_angle, backend="numba")
    return prune_by_transmittance(everything.t_starts, everything.t_ends, everything.ray_indices,
                                  everything.n_rays, sigma_fn, EPS)


BASELINE = "_time_march_cpu_baseline"


def load_baseline(path: Path, folder: Path) -> None:
    """Import the march_numba module at `path` as BASELINE, from a copy in `folder` (so numba's
    on-disk cache of the copy is this run's own, whatever module name cached the original)."""
    copy = folder / f"{BASELINE}.py"
    shutil.copyfile(path, copy)
    spec = importlib.util.spec_from_file_location(BASELINE, copy)
    module = importlib.util.module_from_spec(spec)
    sys.modules[BASELINE] = module
    spec.loader.exec_module(module)


@contextlib.contextmanager
def baseline_backend():
    """The dispatcher's "numba" backend replaced by the module `load_baseline` imported."""
    saved = march_module.MODULES["numba"]
    march_module.MODULES["numba"] = BASELINE
    try:
        yield
    finally:
        march_module.MODULES["numba"] = saved


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


def differences(out: PackedSamples, ref: PackedSamples) -> int:
    """How many (ray, t_start) pairs only one of the two returned (0: the same samples)."""
    if len(out) == len(ref) and torch.equal(out.t_starts, ref.t_starts) and torch.equal(
            out.ray_indices, ref.ray_indices) and torch.equal(out.t_ends, ref.t_ends):
        return 0
    key = lambda s: set(zip(s.ray_indices.tolist(), s.t_starts.tolist()))  # noqa: E731
    a, b = key(out), key(ref)
    return max(len(a ^ b), 1)


def run_case(title, ways, repeats):
    """Time each (name, fn, counter) of `ways`; the first is the reference the others compare with."""
    print(title)
    reference = None
    for name, fn, counter in ways:
        first, median, out = time_call(fn, repeats)
        if reference is None:
            reference = (median, out)
        ref_median, ref_out = reference
        diff = differences(out, ref_out)
        calls = repeats + 1
        evals = (f"  {counter.densities // calls:9d} densities in {counter.calls / calls:5.1f} calls"
                 if counter is not None else " " * 37)
        print(f"  {name:12s} median {median * 1e3:8.2f} ms  (first call {first * 1e3:8.1f} ms)  "
              f"{len(out):9d} samples{evals}  x{ref_median / median:5.1f} vs torch  "
              f"{'identical to torch' if diff == 0 else f'{diff} samples differ from torch'}")


def named_way(name: str, fn, counter):
    """(name, fn, counter); "baseline" runs fn with the dispatcher's numba backend swapped for --baseline."""
    if name != "baseline":
        return name, fn, counter

    def wrapped():
        with baseline_backend():
            return fn()

    return name, wrapped, counter


def time_sphere(args, step: float, numba_ways: list[str]) -> None:
    grid, origins, directions = make_scene(args.rays, args.resolution)
    occupied = float(grid.binaries.float().mean())
    for with_sigma in (False, True):
        ways = []
        for name in ["torch"] + numba_ways + (["numba+prune"] if with_sigma else []):
            counter = Counter() if with_sigma else None
            sigma_fn = dense_sphere(origins, directions, counter) if with_sigma else None
            if name == "numba+prune":
                fn = lambda s=sigma_fn: numba_then_prune(  # noqa: E731
                    grid, origins, directions, step, args.cone_angle, s)
            else:
                backend = "numba" if name == "baseline" else name
                fn = lambda s=sigma_fn, b=backend: march(  # noqa: E731
                    grid, origins, directions, step, args.cone_angle, sigma_fn=s, early_stop_eps=EPS, backend=b)
            ways.append(named_way(name, fn, counter))
        run_case(f"sphere: {args.rays} rays, {args.resolution}^3 grid ({occupied:.1%} occupied), "
                 f"{'sigma_fn (densities)' if with_sigma else 'no sigma_fn'}", ways, args.repeats)


def time_shell(case: str, args, step: float, numba_ways: list[str]) -> None:
    grid = shell_grid(args.resolution)
    levels = ", ".join(f"{float(b.float().mean()):.1%}" for b in grid.binaries)
    box = grid.occupied_box
    origins, directions = view_rays() if case == "view" else train_rays()
    ways = []
    for name in ["torch"] + numba_ways:
        counter = Counter()
        sigma_fn = shell_field(origins, directions, counter, payload=case == "view")
        backend = "numba" if name == "baseline" else name
        fn = lambda s=sigma_fn, b=backend: march(  # noqa: E731
            grid, origins, directions, step, args.cone_angle, sigma_fn=s, early_stop_eps=EPS, backend=b,
            stratified=case == "train", generator=torch.Generator().manual_seed(0))
        ways.append(named_way(name, fn, counter))
    what = "200x200 view, sigma_fn with a payload of 3 floats" if case == "view" else (
        "training batch, stratified, sigma_fn densities only")
    run_case(f"{case}: {len(origins)} rays, {what}; {args.resolution}^3 grid x {grid.cascades} cascades "
             f"({float(grid.binaries.float().mean()):.1%} occupied: {levels}), occupied box "
             f"{box[0].tolist()} .. {box[1].tolist()}", ways, args.repeats)


def main(argv=None) -> None:
    run_command(lambda: _main(argv))


def _main(argv) -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_option("case", choices=["all", "sphere", "view", "train"], default="all")
    parser.add_option("rays", type=int, default=16384, help="rays of the sphere scene")
    parser.add_option("resolution", type=int, default=64)
    parser.add_option("march_steps", type=int, default=512)
    parser.add_option("cone_angle", type=float, default=0.0)
    parser.add_option("repeats", type=int, default=5)
    parser.add_option("threads", type=int, default=0, help="torch and numba threads (0: their defaults)")
    parser.add_option("baseline", type=Path, default=None,
                      help="another march_numba.py to time as 'baseline' through the same dispatcher")
    args = parser.parse_args(argv)
    if min(args.rays, args.resolution, args.march_steps, args.repeats) < 1 or args.threads < 0 or args.cone_angle < 0:
        raise ConfigError("--rays, --resolution, --march_steps and --repeats must be >= 1; --threads and "
                          "--cone_angle >= 0")
    import numba  # noqa: PLC0415

    if args.threads:
        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    step = 2.0 * math.sqrt(3.0) / args.march_steps
    print(f"step {step:.5f}, cone_angle {args.cone_angle:g}; torch threads {torch.get_num_threads()}, "
          f"numba threads {numba.get_num_threads()}")
    numba_ways = ["numba"] + (["baseline"] if args.baseline else [])
    with tempfile.TemporaryDirectory() as folder:
        if args.baseline:
            load_baseline(args.baseline, Path(folder))
        if args.case in ("all", "sphere"):
            time_sphere(args, step, numba_ways)
        for case in ("view", "train"):
            if args.case in ("all", case):
                time_shell(case, args, step, numba_ways)


if __name__ == "__main__":
    main()
