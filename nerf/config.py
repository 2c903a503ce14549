"""Frozen dataclass configs and the configargparse parser generated from them.

Each default lives once, on a dataclass field, with a trailing comment that becomes its `--help`
text. Config files are flat `key = value` (configargparse); the command line overrides them. Keys
are field names and are unique across sections, so a flat file maps onto nested sections.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import sys
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import configargparse

from nerf.errors import ConfigError, NerfError


@dataclass(frozen=True)
class DataConfig:
    data: str = "data/demo"  # scene folder (Blender, transforms.json, LLFF or COLMAP)
    format: str = "auto"  # auto | blender | transforms | llff | colmap
    downscale: int = 1  # image downscale factor (LLFF/COLMAP pick images_N when present)
    generate_demo: bool = False  # generate the built-in demo scene at `data` if it is missing
    eval_views: int = 0  # test views used by periodic evaluation (0 = all)


@dataclass(frozen=True)
class ModelConfig:
    model: str = "ngp"  # ngp (hash grid + tiny MLPs) | vanilla (original NeRF, coarse + fine)
    hash_levels: int = 16  # hash grid resolution levels
    hash_features: int = 2  # features per level
    hash_log2_size: int = 19  # log2 of the hash table size per level
    hash_base_resolution: int = 16  # coarsest grid resolution
    hash_max_resolution: int = 2048  # finest grid resolution over the unit box [-1, 1]^3
    hash_backend: str = "auto"  # auto | torch | triton | tcnn | numba (auto: numba on a CPU, when installed)
    hidden_dim: int = 64  # width of the density and colour MLPs
    geo_features: int = 15  # geometry features passed from the density to the colour MLP
    sh_degree: int = 4  # spherical-harmonics degree of the view-direction encoding
    pos_frequencies: int = 10  # vanilla: positional-encoding frequencies for positions
    dir_frequencies: int = 4  # vanilla: positional-encoding frequencies for directions
    vanilla_width: int = 256  # vanilla: MLP width
    vanilla_depth: int = 8  # vanilla: MLP depth


@dataclass(frozen=True)
class SamplerConfig:
    grid_resolution: int = 128  # occupancy grid cells per axis, per cascade
    march_steps: int = 1024  # ray-marching steps across the unit box diagonal (step = 2*sqrt(3)/N)
    cone_angle: float = 0.0  # step grows as t * cone_angle (0 = constant; 1/256 suits real scenes)
    grid_update_every: int = 16  # steps between occupancy-grid updates
    grid_ema: float = 0.95  # decay of the occupancy grid's running density
    grid_threshold: float = 0.01  # occupied when density * step > min(threshold, grid mean)
    grid_warmup: int = 256  # steps during which every cell is evaluated at each update
    early_stop_eps: float = 1e-4  # stop marching a ray once its transmittance falls below this
    march_backend: str = "auto"  # auto | torch | triton | numba (auto: Triton on CUDA, numba on CPU)
    composite_backend: str = "auto"  # auto | torch | triton | numba (auto: Triton on CUDA, numba on CPU)
    n_coarse: int = 64  # vanilla: stratified samples per ray
    n_fine: int = 128  # vanilla: importance samples per ray


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20000  # optimisation steps
    max_seconds: float = 0.0  # wall-clock training budget in seconds (0 = no limit)
    target_samples: int = 262144  # samples per step the dynamic ray count aims at
    initial_rays: int = 4096  # rays in the first step
    max_rays: int = 65536  # upper bound of the dynamic ray count
    lr: float = 1e-2  # Adam learning rate (hash grid and MLPs)
    lr_warmup: int = 100  # linear warm-up steps
    lr_final_factor: float = 0.03  # learning rate at the end as a fraction of `lr` (exponential decay)
    weight_decay: float = 1e-6  # L2 on MLP weights (not on the hash table)
    loss: str = "mse"  # mse | huber
    huber_delta: float = 0.1  # Huber transition point, in colour units
    random_background: bool = True  # random background colours for RGBA scenes
    ema_decay: float = 0.0  # EMA of weights used for evaluation (0 = off)
    amp: bool = True  # mixed precision on CUDA
    eval_every: int = 0  # steps between evaluations on held-out views (0 = only at the end)
    checkpoint_every: int = 1000  # steps between checkpoints
    keep_checkpoints: int = 3  # newest checkpoints kept
    render_chunk: int = 65536  # rays per chunk when rendering full images


@dataclass(frozen=True)
class OutputConfig:
    video_frames: int = 60  # frames of the orbit video the main job renders (0 = none)
    video_fps: float = 30.0  # its frame rate
    video_elevation: float = -1.0  # its orbit elevation in degrees (-1 = mean of the training cameras)
    mesh_resolution: int = 256  # marching-cubes lattice of the main job's mesh.ply (0 = none)


@dataclass(frozen=True)
class Config:
    name: str = "demo"  # run name: outputs go to <runs_dir>/<name>
    runs_dir: str = "runs"  # parent folder of run directories
    seed: int = 0  # random seed (CPU runs are deterministic for a fixed seed)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    overwrite: bool = False  # replace an existing run directory that holds a different run
    resume: bool = False  # continue from the newest checkpoint in the run directory
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name


# --- parser generation ---------------------------------------------------------------------

_COMMENT = re.compile(r"^\s+(\w+)\s*:[^=]*=.*?#\s*(.*)$")


def _field_help(cls) -> dict[str, str]:
    """Trailing comments of a dataclass's fields, read from its source."""
    helps = {}
    for line in inspect.getsource(cls).splitlines():
        m = _COMMENT.match(line)
        if m:
            helps[m.group(1)] = m.group(2).strip()
    return helps


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _converter(typ):
    """Text -> value for a field type: bool, numbers, str, tuples of numbers, optionals, unions."""
    if typ is bool:
        return _parse_bool
    args = typing.get_args(typ)
    if typing.get_origin(typ) is tuple:
        return lambda text: tuple(args[0](v) for v in text.replace(",", " ").split())
    if args:  # a union such as `float | None` or `float | str`: first member that parses
        members = [a for a in args if a is not type(None)]

        def convert(text: str):
            if type(None) in args and text.strip().lower() in ("none", ""):
                return None
            for member in members:
                try:
                    return _converter(member)(text)
                except ValueError:
                    continue
            raise ValueError(f"cannot read {text!r} as {typ}")

        return convert
    return typ


def _to_text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _sections(cls) -> list[tuple[str | None, type]]:
    """(attribute, dataclass) pairs: the top level (None) then each nested section."""
    hints = typing.get_type_hints(cls)
    out = [(None, cls)]
    for f in fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.append((f.name, hints[f.name]))
    return out


def _leaf_fields(cls):
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if not dataclasses.is_dataclass(hints[f.name]):
            yield f, hints[f.name]


def build_parser(description: str = "", extra: typing.Callable | None = None, root=None) -> configargparse.ArgParser:
    """A parser with one `--key` per field of `root` (default Config) and `--config FILE`."""
    root = root or Config
    parser = configargparse.ArgParser(
        description=description,
        config_file_parser_class=configargparse.DefaultConfigFileParser,
        formatter_class=configargparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-c", "--config", is_config_file=True, help="flat key = value config file")
    add_config_options(parser, root)
    if extra is not None:
        extra(parser)
    return parser


def add_config_options(parser: configargparse.ArgParser, root, first_group: str = "run") -> None:
    """One `--key` per leaf field of the dataclass `root` and its sections, added to `parser`.

    `build_parser` calls it for its root; an `extra` calls it to add a second dataclass's
    options (read back with `config_from_namespace(ns, root)`). Keys must be unique (argparse
    refuses a key already on the parser).
    """
    seen: set[str] = set()
    for section, cls in _sections(root):
        helps = _field_help(cls)
        group = parser.add_argument_group(section or first_group)
        for f, typ in _leaf_fields(cls):
            if f.name in seen:
                raise RuntimeError(f"config key {f.name!r} is defined twice")
            seen.add(f.name)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            group.add_argument(f"--{f.name}", type=_converter(typ), default=default, help=helps.get(f.name, ""))


def config_from_namespace(ns, root=None):
    """Fold a flat namespace back into the nested frozen dataclasses of `root` (default Config)."""
    root = root or Config
    values = vars(ns)
    kwargs = {}
    for section, cls in _sections(root):
        leaf = {f.name: values[f.name] for f, _ in _leaf_fields(cls) if f.name in values}
        if section is None:
            kwargs.update(leaf)
        else:
            kwargs[section] = cls(**leaf)
    return root(**kwargs)


def parse_config(argv: list[str] | None = None, description: str = "", extra=None, root=None):
    """Parse `argv` (config file + overrides) into `root` (default Config) and the namespace.

    Unknown keys, in the file or on the command line, raise ConfigError naming them.
    """
    parser = build_parser(description, extra, root)
    ns, unknown = parser.parse_known_args(argv)
    if unknown:
        where = f" (config file {ns.config})" if getattr(ns, "config", None) else ""
        names = ", ".join(u.split("=")[0] for u in unknown if u.startswith("-")) or " ".join(unknown)
        raise ConfigError(f"unknown option(s) {names}{where}; see --help for the valid keys")
    return config_from_namespace(ns, root), ns


def add_json_option(parser) -> None:
    """The tools' `--json FILE` option (an `extra` for parse_config)."""
    parser.add_argument("--json", default="", help="also write the results as JSON to this file")


def write_json_report(path: str | Path, record: dict, indent: int | None = 1) -> None:
    """Write a tool's results as JSON (indent None: one line); failure is a NerfError naming path."""
    try:
        Path(path).write_text(json.dumps(record, indent=indent) + "\n")
    except OSError as exc:
        raise NerfError(f"{path}: cannot write the JSON results ({exc.strerror})") from exc


def run_report_tool(argv, description: str, root: type | None, job, text, extra=None) -> None:
    """main() of a tool that runs one job and reports a dict of results.

    Parses `root`'s options (None: the training Config) plus `--json` and what `extra(parser)`
    adds, runs `job(cfg) -> dict` (`job(cfg, ns)` when `extra` is given, to read its options),
    writes the JSON report when asked and prints `text(result)`. A NerfError prints one line on
    stderr and exits with status 2.
    """

    def options(parser) -> None:
        add_json_option(parser)
        if extra is not None:
            extra(parser)

    try:
        cfg, ns = parse_config(argv, description, options, root=root)
        result = job(cfg) if extra is None else job(cfg, ns)
        if ns.json:
            write_json_report(ns.json, result)
    except NerfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(text(result))


def config_to_text(cfg) -> str:
    """The resolved configuration as a flat `key = value` file (re-runnable with --config)."""
    lines = []
    for section, cls in _sections(type(cfg)):
        obj = cfg if section is None else getattr(cfg, section)
        lines.append(f"# {section or 'run'}")
        for f, _ in _leaf_fields(cls):
            value = getattr(obj, f.name)
            lines.append(f"{f.name} = {_to_text(value)}")
    return "\n".join(lines) + "\n"


def load_config_file(path: str | Path) -> Config:
    """Read a resolved config file (as written by `config_to_text`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    cfg, _ = parse_config(["--config", str(path)])
    return cfg


@dataclass(frozen=True)
class RenderConfig:
    run: str = "runs/demo"  # run directory to render from
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    test: bool = True  # render the test split and report PSNR/SSIM per view
    path: str = "orbit"  # camera path: orbit | spiral | interpolate | none | a nerfstudio camera_path.json
    frames: int = 120  # frames of an orbit, spiral or interpolated path
    fps: float = 30.0  # video frame rate (a camera_path.json brings its own)
    width: int = 0  # output width in pixels (0 = the scene's)
    height: int = 0  # output height in pixels (0 = the scene's)
    elevation: float = -1.0  # orbit elevation in degrees (-1 = mean of the training cameras)
    radius_scale: float = 1.0  # orbit radius as a multiple of the training cameras' mean distance
    outputs: str = "rgb,depth"  # videos to write: any of rgb, depth, opacity
    frame_format: str = "mp4"  # mp4 | png | both
    upscale: int = 1  # render at 1/upscale resolution and super-resolve (1 = off, or 2, 4)
    sr_weights: str = ""  # super-resolution weights ("" = train or reuse the scene-adapted net)
    sr_steps: int = 2000  # steps of scene-adaptive SR training when it is needed
    out: str = ""  # output folder ("" = <run>/renders)
