"""CPU timings of the hash grid's torch backend and of the table-gradient variants it was chosen from.

Usage: nice -n 19 python tools/benchmark_hashgrid.py [--points 131072] [--repeats 3] [--threads 1]

Prints the library's forward and forward+backward (level by level over chunks of points), then
the all-levels-fused alternative: corner indices of every level in one flat index (straightforward
torch), one gather, and seven ways to scatter its gradient into the [E, F] table, each checked
against a float64 index_add_.
Times are the best of the repeats, as process CPU time and wall time (a shared machine inflates
the wall time). Uniform random points are the worst case for cache locality.
"""

import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: import the repository's package uninstalled
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerf.cli import CommandParser, run_command  # noqa: E402
from nerf.encodings import HashGrid  # noqa: E402
from nerf.errors import ConfigError  # noqa: E402
from nerf.encodings.hashgrid_levels import HASH_PRIMES  # noqa: E402


def best_of(fn, repeats: int) -> str:
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return f"cpu {min(cpu) * 1e3:8.1f} ms   wall {min(wall) * 1e3:8.1f} ms"


def fused_corners(x, levels):  # [N, 3] -> flat-table rows [L*N*8], weights [L*N*8]
    rows, weights = [], []
    for level in range(levels.n_levels):
        p = x * levels.scales[level] + 0.5
        cell = p.floor()
        frac, cell = p - cell, cell.long()
        for corner in range(8):
            bits = torch.tensor([corner & 1, (corner >> 1) & 1, (corner >> 2) & 1])
            v = (cell + bits).unbind(-1)
            size, r = levels.table_sizes[level], levels.resolutions[level]
            if levels.hashed[level]:
                index = (v[0] * HASH_PRIMES[0] ^ v[1] * HASH_PRIMES[1] ^ v[2] * HASH_PRIMES[2]) & (size - 1)
            else:
                index = (v[0] + v[1] * r + v[2] * r * r) % size
            rows.append(levels.offsets[level] + index)
            weights.append(torch.where(bits.bool(), frac, 1.0 - frac).prod(-1))
    return torch.cat(rows), torch.cat(weights)


def main(argv=None) -> None:
    run_command(lambda: _main(argv))


def _main(argv) -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_option("points", type=int, default=2**17)
    parser.add_option("repeats", type=int, default=3)
    parser.add_option("threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    if min(args.points, args.repeats, args.threads) < 1:
        raise ConfigError("--points, --repeats and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    grid = HashGrid(backend="torch")  # 16 levels, F = 2, T = 2^19, resolution 16 .. 2048
    levels, n, f = grid.levels, args.points, grid.levels.n_features
    x, v_out = torch.rand(n, 3), torch.randn(n, grid.out_dim)
    print(f"N={n} L={levels.n_levels} F={f} T=2^19 E={levels.n_entries} threads={args.threads}")

    def forward_backward():
        grid.params.grad = None
        (grid(x) * v_out).sum().backward()

    with torch.no_grad():
        print(f"{'library forward':34s}", best_of(lambda: grid(x), args.repeats))
    print(f"{'library forward+backward':34s}", best_of(forward_backward, args.repeats))

    print(f"{'fused all-level corners (8 x L)':34s}", best_of(lambda: fused_corners(x, levels), args.repeats))
    rows, weights = fused_corners(x, levels)
    table = grid.table.detach()
    table_c = table.view(torch.complex64).view(-1)
    gather = lambda: torch.index_select(table_c, 0, rows)  # noqa: E731
    print(f"{'fused all-level gather (complex)':34s}", best_of(gather, args.repeats))
    # d out[n, l] / d table[row] = weight: the per-corner source rows of the table gradient.
    v_levels = v_out.view(n, levels.n_levels, f).transpose(0, 1).repeat_interleave(8, dim=0)
    source = (v_levels.reshape(-1, f) * weights[:, None]).contiguous()
    shape = (levels.n_entries, f)
    reference = torch.zeros(shape, dtype=torch.float64).index_add_(0, rows, source.double())
    variants = {
        "index_add_ [E, F]": lambda: torch.zeros(shape).index_add_(0, rows, source),
        "index_add_ complex rows [E]": lambda: torch.zeros(shape).view(torch.complex64).view(-1).index_add_(
            0, rows, source.view(torch.complex64).view(-1)),
        "index_put_ accumulate complex": lambda: torch.zeros(shape).view(torch.complex64).view(-1).index_put_(
            (rows,), source.view(torch.complex64).view(-1), accumulate=True),
        "bincount per feature": lambda: torch.stack(
            [torch.bincount(rows, source[:, k], minlength=shape[0]) for k in range(f)], dim=1),
        "scatter_add_ [E, F]": lambda: torch.zeros(shape).scatter_add_(0, rows[:, None].expand(-1, f), source),
        "embedding_dense_backward": lambda: torch.ops.aten.embedding_dense_backward(source, rows, shape[0], -1, False),
        "autograd of table[rows]": lambda: torch.autograd.grad(
            table.requires_grad_()[rows], table, source)[0],
    }
    for name, fn in variants.items():
        grad = fn()
        grad = torch.view_as_real(grad) if grad.is_complex() else grad
        error = (grad.reshape(shape).double() - reference).abs().max().item()
        print(f"{'grad: ' + name:34s}", best_of(fn, args.repeats), f"  max|err| {error:.1e}")
    table.requires_grad_(False)


if __name__ == "__main__":
    main()
