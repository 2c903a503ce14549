"""Time each accelerated op per backend against the device's copy bandwidth, or train lego end to end.

    python tools/benchmark_kernels.py [--small] [--repeats 50] [--interpret_timing]
    python tools/benchmark_kernels.py --train_lego ../shared/data/nerf_synthetic/lego [--seconds 120]

Kernel mode times compositing (torch | numba | triton), the hash grid (torch | numba | triton |
tcnn; forward, and forward + backward) and occupancy-grid marching (torch | numba | triton). On CUDA each time is the
median of --repeats warm runs measured with CUDA events; on the CPU with time.perf_counter.
There Triton runs in its interpreter, whose timings say nothing about the kernels, so those rows
are skipped unless --interpret-timing.

Bandwidth = the bytes an op must move / its time, printed beside the copy bandwidth of a large
tensor (read + write, timed the same way). Bytes count each input read once and each output
written once; gathers count every corner they fetch (hash grid), and the backward's atomic adds
count twice (read + write). Marching counts its rays and its output samples only: it is bound
by latency and arithmetic, so its figure is a floor, not a roofline.

--train_lego trains configs/lego.txt (800x800, hash grid) at PATH for --seconds with the
fastest backends ("auto"), then evaluates every test view and prints steps, seconds, PSNR.
--small shrinks every size so the script runs end to end on a CPU in a minute or two.
"""

import os
import statistics
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf import backends  # noqa: E402
from nerf.cli import CommandParser, run_command  # noqa: E402
from nerf.errors import ConfigError  # noqa: E402
from nerf.encodings.hashgrid import HashGrid, available_hashgrid_backends  # noqa: E402
from nerf.fields.ngp import ngp_step_size  # noqa: E402
from nerf.render.composite import available_backends, composite  # noqa: E402
from nerf.sampling.march import march  # noqa: E402
from nerf.sampling.occupancy import OccupancyGrid  # noqa: E402

LEGO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "lego.txt"


def make_timer(device: torch.device, repeats: int, warmup: int):
    """fn -> median seconds of `repeats` calls after `warmup` calls."""

    def measure(fn) -> float:
        for _ in range(warmup):
            fn()
        if device.type != "cuda":
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            return statistics.median(times)
        torch.cuda.synchronize(device)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        return statistics.median(start.elapsed_time(end) / 1e3 for start, end in events)

    return measure


def composite_cases(device, small):
    n, k = (256, 16) if small else (32768, 32)
    s = n * k
    gen = torch.Generator(device).manual_seed(0)
    ray_indices = torch.arange(n, device=device).repeat_interleave(k)
    t_starts = 2.0 + 0.01 * torch.arange(k, device=device).repeat(n).float()
    t_ends = t_starts + 0.01
    sigmas = 10.0 * torch.rand(s, device=device, generator=gen)
    rgbs = torch.rand(s, 3, device=device, generator=gen)
    background, v_rgb = torch.rand(3, device=device), torch.randn(n, 3, device=device, generator=gen)
    fwd_bytes = s * (4 + 4 + 4 + 12 + 8 + 4) + n * 20  # t, t, sigma, rgb, ray index in; weight out; rays out
    bwd_bytes = s * (24 + 16) + n * 40  # inputs again, per-ray outputs + cotangents; sigma/rgb grads out
    for backend in ("torch", "numba", "triton"):
        def forward(backend=backend):
            with torch.no_grad():
                composite(t_starts, t_ends, ray_indices, sigmas, rgbs, n, background, backend=backend)

        def forward_backward(backend=backend):
            sig, col = sigmas.requires_grad_(), rgbs.requires_grad_()
            out = composite(t_starts, t_ends, ray_indices, sig, col, n, background, backend=backend)
            torch.autograd.grad(out.rgb, (sig, col), v_rgb)

        usable = backend in available_backends()
        yield f"composite S={s}", backend, "fwd", forward, fwd_bytes, usable
        yield f"composite S={s}", backend, "fwd+bwd", forward_backward, fwd_bytes + bwd_bytes, usable


def hashgrid_cases(device, small):
    n, geometry = (4096, dict(n_levels=8, log2_table_size=12, max_resolution=256)) if small else (1 << 20, {})
    gen = torch.Generator(device).manual_seed(0)
    x = torch.rand(n, 3, device=device, generator=gen)
    for backend in ("torch", "numba", "triton", "tcnn"):
        usable = backend in available_hashgrid_backends()
        enc = HashGrid(backend=backend if usable else "torch", **geometry).to(device)
        lf, f = enc.out_dim, enc.levels.n_features
        v_out = torch.randn(n, lf, device=device, generator=gen)
        fwd_bytes = n * (12 + lf * 8 * 4 + lf * 4)  # positions, 8 gathered corners per level, features out
        bwd_bytes = n * (12 + lf * 4 + lf * 8 * 4 * 2) + enc.levels.n_entries * f * 4  # + zeroed table grad

        def forward(enc=enc):
            with torch.no_grad():
                enc(x)

        def forward_backward(enc=enc, v_out=v_out):
            out = enc(x)
            torch.autograd.grad(out, enc.params, v_out.to(out.dtype))

        name = f"hash grid N={n} L={enc.levels.n_levels}"
        yield name, backend, "fwd", forward, fwd_bytes, usable
        yield name, backend, "fwd+bwd", forward_backward, fwd_bytes + bwd_bytes, usable


def march_cases(device, small):
    n, resolution, march_steps = (512, 32, 128) if small else (1 << 16, 128, 1024)
    grid = OccupancyGrid(torch.tensor([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]]), resolution, cascades=1).to(device)
    hollow_sphere = lambda p: ((p.norm(dim=-1) - 0.8).abs() < 0.05).float()  # noqa: E731
    grid.update(hollow_sphere, warmup=True, generator=torch.Generator(device).manual_seed(0))
    gen = torch.Generator(device).manual_seed(0)
    origins = torch.randn(n, 3, device=device, generator=gen)
    origins = 4.0 * origins / origins.norm(dim=-1, keepdim=True)
    directions = -origins / 4.0 + 0.2 * torch.randn(n, 3, device=device, generator=gen)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    step = ngp_step_size(march_steps)
    for cone_angle in (0.0, 1.0 / 256):
        samples = len(march(grid, origins, directions, step, cone_angle))
        nbytes = n * 24 + samples * 16 + grid.cascades * resolution**3 // 8
        for backend in ("torch", "numba", "triton"):
            def march_rays(backend=backend, cone_angle=cone_angle):
                march(grid, origins, directions, step, cone_angle, backend=backend)

            usable = backends.usable(backend, device)
            yield f"march R={resolution} c={cone_angle:g} S={samples}", backend, "fwd", march_rays, nbytes, usable


def run_kernels(args, device) -> None:
    measure = make_timer(device, args.repeats, args.warmup)
    size = (32 if args.small else 512) << 20
    src = torch.ones(size // 4, device=device)
    dst = torch.empty_like(src)
    copy_bandwidth = 2 * size / measure(lambda: dst.copy_(src))
    del src, dst
    print(f"device {device}; copy bandwidth {copy_bandwidth / 1e9:.1f} GB/s ({size >> 20} MiB read + written)")
    print(f"{'op':38s} {'backend':8s} {'pass':8s} {'time':>11s} {'bandwidth':>12s} {'of copy':>8s}")
    for cases in (composite_cases, hashgrid_cases, march_cases):
        for op, backend, kind, fn, nbytes, usable in cases(device, args.small):
            head = f"{op:38s} {backend:8s} {kind:8s}"
            if backend == "triton" and device.type == "cpu" and not args.interpret_timing:
                print(f"{head} skipped: Triton interpreter timings are meaningless (--interpret-timing runs them)")
            elif not usable:
                print(f"{head} unavailable here")
            else:
                seconds = measure(fn)
                rate = nbytes / seconds
                print(f"{head} {seconds * 1e3:8.3f} ms {rate / 1e9:7.2f} GB/s {100 * rate / copy_bandwidth:7.1f}%")


def train_lego(args) -> None:
    from nerf.config import parse_config
    from nerf.jobs.run import prepare_scene
    from nerf.train.trainer import Trainer

    argv = ["--config", str(LEGO_CONFIG), "--data", args.train_lego, "--max_seconds", str(args.seconds),
            "--hash_backend", "auto", "--eval_every", "0", "--eval_views", "0"]
    if args.small:  # 100x100 images, a small grid and table, a handful of steps, two test views
        argv += ["--downscale", "8", "--steps", "20", "--grid_resolution", "32", "--march_steps", "256",
                 "--hash_log2_size", "14", "--hash_max_resolution", "256", "--initial_rays", "512",
                 "--target_samples", "16384", "--grid_warmup", "4", "--render_chunk", "4096"]
    cfg, _ = parse_config(argv)
    scene = prepare_scene(cfg)
    trainer = Trainer(cfg, scene, run_dir=None, quiet=True)
    trainer.fit()
    metrics = trainer.evaluate("test", max_views=2 if args.small else 0)
    backend = trainer.field.encoding.resolve_backend(trainer.device)
    print(f"lego {scene.size_text} on {trainer.device} (hash grid backend {backend})")
    print(f"steps {trainer.step}  seconds {trainer.elapsed:.1f}  test PSNR {metrics['psnr']:.2f} dB "
          f"over {metrics['views']} views  SSIM {metrics['ssim']:.4f}")


def main(argv=None) -> None:
    run_command(lambda: _main(argv))


def _main(argv) -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_switch("small", help="tiny sizes (CPU smoke run)")
    parser.add_option("repeats", type=int, default=50, help="timed runs per op (median reported)")
    parser.add_option("warmup", type=int, default=5, help="untimed runs first (compilation, caches)")
    parser.add_switch("interpret_timing", help="on CPU, also time Triton's interpreter")
    parser.add_option("train_lego", metavar="PATH", default="", help="train + evaluate lego at PATH instead")
    parser.add_option("seconds", type=float, default=120.0, help="training budget of --train_lego")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or not args.seconds > 0:
        raise ConfigError("--repeats must be >= 1, --warmup >= 0 and --seconds > 0")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and args.interpret_timing:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports triton
    if args.train_lego:
        train_lego(args)
    else:
        run_kernels(args, device)


if __name__ == "__main__":
    main()
