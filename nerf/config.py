"""Frozen dataclass configs and the configargparse parser generated from them.

Each default lives once, on a dataclass field, with a trailing comment that becomes its `--help`
text; what a field allows (choices, a range, a rule) is declared beside it with `option(...)`
and checked when the dataclass is built, so a bad value is refused before any work starts,
whether it comes from a file, the command line or code. Config files are flat `key = value`;
the command line overrides them. A duplicated key, a line without `=` and a `[section]` header
are errors naming the file and line. Keys are field names and are unique across sections, so a
flat file maps onto nested sections.
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

from nerf.atomic import write_text_atomic
from nerf.cli import RaisingErrors, add_switch, flag_names, parse_bool, run_command
from nerf.errors import ConfigError, NerfError

# --- declared constraints --------------------------------------------------------------------

KERNEL_BACKENDS = ("auto", "torch", "triton", "numba")  # marching and compositing
HASH_BACKENDS = ("auto", "torch", "triton", "tcnn", "numba")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def option(default, *, choices: tuple | None = None, at_least=None, above=None, at_most=None, below=None,
           rule: typing.Callable | None = None, given_with: str | None = None):
    """A dataclass field with its allowed values declared: `choices`, bounds (inclusive
    `at_least`/`at_most`, exclusive `above`/`below`) or `rule(value) -> problem or None`.
    `given_with = "key"`: a value from a config file applies only if that file also sets `key`
    and the command line does not override it (the parser resets it to the default otherwise)."""
    meta = {k: v for k, v in dict(choices=choices, at_least=at_least, above=above, at_most=at_most,
                                  below=below, rule=rule, given_with=given_with).items() if v is not None}
    return field(default=default, metadata=meta)


def allowed_text(meta) -> str:
    """What a field allows, in words (for --help and error messages)."""
    if "choices" in meta:
        return "one of " + ", ".join(str(c) for c in meta["choices"])
    parts = []
    for key, sign in (("at_least", ">="), ("above", ">"), ("at_most", "<="), ("below", "<")):
        if key in meta:
            parts.append(f"{sign} {meta[key]}")
    return " and ".join(parts)


def field_problem(meta, value) -> str | None:
    """Why `value` breaks the field's declared constraints, or None."""
    if "choices" in meta and value not in meta["choices"]:
        return f"expected {allowed_text(meta)}"
    bounds = (("at_least", lambda v, b: v >= b), ("above", lambda v, b: v > b),
              ("at_most", lambda v, b: v <= b), ("below", lambda v, b: v < b))
    if any(key in meta and not ok(value, meta[key]) for key, ok in bounds):  # NaN fails every bound
        return f"must be {allowed_text({k: meta[k] for k, _ in bounds if k in meta})}"
    if "rule" in meta:
        return meta["rule"](value)
    return None


def check_fields(obj) -> None:
    """`__post_init__` of the config dataclasses: ConfigError naming the first bad field."""
    for f in fields(obj):
        if f.metadata:
            value = getattr(obj, f.name)
            problem = field_problem(f.metadata, value)
            if problem:
                raise FieldError(f.name, f"{f.name} = {value!r}: {problem}")


class FieldError(ConfigError):
    """A ConfigError about one field; `key` lets the parser say where the value came from."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def device_problem(value: str) -> str | None:
    if not _DEVICE.match(value):
        return "expected auto, cpu, cuda, cuda:N or mps"
    return None


def run_name_problem(value: str) -> str | None:
    if not value or value in (".", "..") or "/" in value or "\\" in value:
        return ("must be a plain folder name inside runs_dir (not empty, no '/' or '\\', not '.' or '..'), "
                "so a run never resolves to the runs folder or outside it")
    return None


ELEVATION_MEAN = -1.0  # an orbit elevation of exactly -1 means: the training cameras' mean


def elevation_problem(value: float) -> str | None:
    if not -90.0 < value < 90.0:
        return ("must be strictly between -90 and 90 degrees (an orbit seen from straight above or "
                "below has no direction to turn; 89 is a top view), or -1 for the training cameras' mean (other negative values look up from below)")
    return None


def outputs_problem(value: str) -> str | None:
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    bad = [k for k in kinds if k not in OUTPUT_KINDS]
    if not kinds or bad:
        return f"expected a comma-separated list of {', '.join(OUTPUT_KINDS)}"
    return None


def camera_path_problem(value: str) -> str | None:
    if value in CAMERA_PATHS or value.endswith(".json"):
        return None
    return f"expected {', '.join(CAMERA_PATHS)} or a nerfstudio camera_path .json file"


OUTPUT_KINDS = ("rgb", "depth", "opacity")
CAMERA_PATHS = ("orbit", "spiral", "interpolate", "none")


@dataclass(frozen=True)
class DataConfig:
    __post_init__ = check_fields

    data: str = "data/demo"  # scene folder (Blender, transforms.json, LLFF or COLMAP)
    format: str = option("auto", choices=("auto", "blender", "transforms", "llff", "colmap"))  # auto | blender | transforms | llff | colmap
    downscale: int = option(1, at_least=1)  # image downscale factor (LLFF/COLMAP pick images_N when present)
    generate_demo: bool = option(False, given_with="data")  # generate the built-in demo scene at `data` when missing (from a file: only at that file's own `data`)
    eval_views: int = option(0, at_least=0)  # test views used by periodic evaluation (0 = all)


@dataclass(frozen=True)
class ModelConfig:
    __post_init__ = check_fields

    model: str = option("ngp", choices=("ngp", "vanilla"))  # ngp (hash grid + tiny MLPs) | vanilla (original NeRF, coarse + fine)
    hash_levels: int = option(16, at_least=1)  # hash grid resolution levels
    hash_features: int = option(2, at_least=1)  # features per level
    hash_log2_size: int = option(19, at_least=1, at_most=30)  # log2 of the hash table size per level
    hash_base_resolution: int = option(16, at_least=1)  # coarsest grid resolution
    hash_max_resolution: int = option(2048, at_least=1)  # finest grid resolution over the unit box [-1, 1]^3
    appearance_dim: int = option(0, at_least=0)  # per-training-image appearance embedding (exposure, white balance) fed to the colour MLP; 0 = off. Held-out views use the mean embedding
    contraction: str = option("none", choices=("none", "inf"))  # none | inf (mip-NeRF 360 contraction, L-inf norm: the field covers all of space; unbounded captures)
    hash_backend: str = option("auto", choices=HASH_BACKENDS)  # auto | torch | triton | tcnn | numba (auto: numba on a CPU, when installed)
    hidden_dim: int = option(64, at_least=1)  # width of the density and colour MLPs
    geo_features: int = option(15, at_least=0)  # geometry features passed from the density to the colour MLP
    sh_degree: int = option(4, at_least=1, at_most=5)  # spherical-harmonics degree of the view-direction encoding
    pos_frequencies: int = option(10, at_least=0)  # vanilla: positional-encoding frequencies for positions
    dir_frequencies: int = option(4, at_least=0)  # vanilla: positional-encoding frequencies for directions
    vanilla_width: int = option(256, at_least=1)  # vanilla: MLP width
    vanilla_depth: int = option(8, at_least=1)  # vanilla: MLP depth


@dataclass(frozen=True)
class SamplerConfig:
    __post_init__ = check_fields

    grid_resolution: int = option(128, at_least=2)  # occupancy grid cells per axis, per cascade
    grid_scale: float = option(1.0, at_least=1.0)  # the occupancy grid covers the scene box scaled by this (cascades double outward); > 1 with contraction
    march_steps: int = option(1024, at_least=1)  # ray-marching steps across the unit box diagonal (step = 2*sqrt(3)/N)
    cone_angle: float = option(0.0, at_least=0.0)  # step grows as t * cone_angle (0 = constant; 1/256 suits real scenes)
    grid_update_every: int = option(16, at_least=1)  # steps between occupancy-grid updates
    grid_ema: float = option(0.95, at_least=0.0, below=1.0)  # decay of the occupancy grid's running density
    grid_threshold: float = option(0.01, at_least=0.0)  # occupied when density * step > min(threshold, grid mean)
    grid_warmup: int = option(256, at_least=0)  # steps during which every cell is evaluated at each update
    early_stop_eps: float = option(1e-4, at_least=0.0, below=1.0)  # stop marching a ray once its transmittance falls below this
    march_backend: str = option("auto", choices=KERNEL_BACKENDS)  # auto | torch | triton | numba (auto: Triton on CUDA, numba on CPU)
    composite_backend: str = option("auto", choices=KERNEL_BACKENDS)  # auto | torch | triton | numba (auto: Triton on CUDA, numba on CPU)
    n_coarse: int = option(64, at_least=1)  # vanilla: stratified samples per ray
    n_fine: int = option(128, at_least=0)  # vanilla: importance samples per ray


@dataclass(frozen=True)
class TrainConfig:
    __post_init__ = check_fields

    steps: int = option(20000, at_least=1)  # optimisation steps
    max_seconds: float = option(0.0, at_least=0.0)  # wall-clock training budget in seconds (0 = no limit)
    target_samples: int = option(262144, at_least=1)  # samples per step the dynamic ray count aims at
    initial_rays: int = option(4096, at_least=1)  # rays in the first step
    max_rays: int = option(65536, at_least=1)  # upper bound of the dynamic ray count
    lr: float = option(1e-2, above=0.0)  # Adam learning rate (hash grid and MLPs)
    lr_warmup: int = option(100, at_least=0)  # linear warm-up steps
    lr_final_factor: float = option(0.03, above=0.0, at_most=1.0)  # learning rate at the end as a fraction of `lr` (exponential decay)
    weight_decay: float = option(1e-6, at_least=0.0)  # L2 on MLP weights (not on the hash table)
    loss: str = option("mse", choices=("mse", "huber"))  # mse | huber
    huber_delta: float = option(0.1, above=0.0)  # Huber transition point, in colour units
    random_background: bool = True  # random background colours for RGBA scenes
    log_every: int = option(100, at_least=0)  # steps per training line in metrics.jsonl (and TensorBoard); 0 = none
    ema_decay: float = option(0.0, at_least=0.0, below=1.0)  # EMA of weights used for evaluation (0 = off)
    amp: bool = True  # mixed precision on CUDA
    eval_every: int = option(0, at_least=0)  # steps between evaluations on held-out views (0 = only at the end)
    checkpoint_every: int = option(1000, at_least=1)  # steps between checkpoints
    keep_checkpoints: int = option(3, at_least=1)  # newest checkpoints kept
    render_chunk: int = option(16384, at_least=1)  # rays per chunk when rendering full images (16384: fox views 3.08 s against 3.42 s at 65536, cache-resident chunks)
    pose_refine: bool = False  # learn a rigid correction of each training camera's pose (for imperfect poses, e.g. COLMAP's)
    pose_lr: float = option(2e-4, above=0.0)  # Adam learning rate of the pose corrections (same warm-up and decay as lr; docs/DESIGN.md)
    pose_align_steps: int = option(150, at_least=0)  # with pose_refine: Adam steps fitting each held-out view's pose to its photo before it is scored (0 = score at the given poses; nerf/train/pose_align.py)


@dataclass(frozen=True)
class OutputConfig:
    __post_init__ = check_fields

    video_frames: int = option(60, at_least=0)  # frames of the orbit video the main job renders (0 = none)
    video_fps: float = option(30.0, above=0.0)  # its frame rate
    video_elevation: float = option(-1.0, rule=elevation_problem)  # its orbit elevation in degrees (-1 = mean of the training cameras)
    mesh_resolution: int = option(256, at_least=0)  # marching-cubes lattice of the main job's mesh.ply (0 = none)


@dataclass(frozen=True)
class Config:
    __post_init__ = check_fields

    name: str = option("demo", rule=run_name_problem)  # run name: outputs go to <runs_dir>/<name>
    runs_dir: str = "runs"  # parent folder of run directories
    seed: int = option(0, at_least=0)  # random seed (CPU runs are deterministic for a fixed seed)
    device: str = option("auto", rule=device_problem)  # auto | cpu | cuda | cuda:N
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


def _converter(typ):
    """Text -> value for a field type: bool, numbers, str, tuples of numbers, optionals, unions."""
    if typ is bool:
        return parse_bool
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


class StrictConfigFileParser(configargparse.ConfigFileParser):
    """Flat `key = value` files; anything else is an error naming the file and line.

    Blank lines and lines starting with `#` or `;` are comments, as is ` # ...` after a value.
    A `[section]` header, a line without `=`, an empty key and a key set twice are refused
    (configargparse's default parser skips headers, reads `key value` and lets the last of two
    settings win without a word).
    """

    def get_syntax_description(self):
        return "flat `key = value` lines; # starts a comment"

    def parse(self, stream):
        name = getattr(stream, "name", "config")
        return {key: value for key, (value, _) in read_config_lines(stream, name).items()}


_TRAILING_COMMENT = re.compile(r"\s+[#;].*$")


def read_config_lines(lines, name: str) -> dict[str, tuple[str, int]]:
    """{key: (value, line number)} of a flat config file's lines; ConfigError on a bad line."""
    items: dict[str, tuple[str, int]] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        where = f"{name} line {number}"
        if line.startswith("["):
            raise ConfigError(f"{where}: section header {line!r}: config files are flat `key = value` lines")
        if "=" not in line:
            raise ConfigError(f"{where}: {line!r} has no '=': write `key = value`")
        key, value = (part.strip() for part in line.split("=", 1))
        value = _TRAILING_COMMENT.sub("", value).strip()
        if not key or not re.fullmatch(r"[A-Za-z_][\w-]*", key):
            raise ConfigError(f"{where}: {line!r}: expected `key = value` with a key like max_rays")
        canonical = key.replace("-", "_")
        if canonical in items:
            raise ConfigError(f"{where}: {key} is set twice (first on line {items[canonical][1]}); keep one")
        items[canonical] = (value, number)
    return items


class ConfigParser(RaisingErrors, configargparse.ArgParser):
    """configargparse with the strict file format; a usage error raises ConfigError."""


def add_dataclass_options(parser, root, first_group: str = "run") -> None:
    """One option per leaf field of `root` (sections become help groups, top-level fields go to
    `first_group`): `--name` and its kebab alias, booleans as switches, the field's comment and
    allowed values as help. `build_parser` calls it for its root; an `extra` may call it to add a
    second dataclass's options (read back with `config_from_namespace(ns, root)`)."""
    seen: set[str] = set()
    for section, cls in _sections(root):
        helps = _field_help(cls)
        group = parser.add_argument_group(section or first_group)
        for f, typ in _leaf_fields(cls):
            if f.name in seen:
                raise RuntimeError(f"config key {f.name!r} is defined twice")
            seen.add(f.name)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            text = helps.get(f.name, "")
            if f.metadata and allowed_text(f.metadata):
                text = f"{text} [{allowed_text(f.metadata)}]"
            if typ is bool:
                add_switch(group, f.name, default, text)
            else:
                group.add_argument(*flag_names(f.name), dest=f.name, type=_converter(typ), default=default,
                                   help=text)


def build_parser(description: str = "", extra: typing.Callable | None = None, root=None) -> configargparse.ArgParser:
    """A parser with one `--key` per field of `root` (default Config) and `--config FILE`."""
    root = root or Config
    parser = ConfigParser(
        description=description,
        config_file_parser_class=StrictConfigFileParser,
        formatter_class=configargparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-c", "--config", is_config_file=True, help="flat key = value config file")
    add_dataclass_options(parser, root)
    if extra is not None:
        extra(parser)
    return parser


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


def _given_on_command_line(argv: list[str], key: str) -> bool:
    return any(a.split("=", 1)[0] in flag_names(key) for a in argv)


def _config_argument(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a in ("-c", "--config") and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def _file_lines(path) -> dict[str, tuple[str, int]]:
    try:
        with open(path) as f:
            return read_config_lines(f, str(path))
    except (OSError, ConfigError):  # already reported by the parser, or not there
        return {}


def _detach(ns, argv: list[str], lines: dict, root) -> None:
    """Reset `given_with` fields whose file value lost its partner to the command line."""
    for _, cls in _sections(root):
        for f, _ in _leaf_fields(cls):
            partner = f.metadata.get("given_with")
            if partner and f.name in lines and not _given_on_command_line(argv, f.name) and (
                    partner not in lines or _given_on_command_line(argv, partner)):
                setattr(ns, f.name, f.default)


def parse_config(argv: list[str] | None = None, description: str = "", extra=None, root=None):
    """Parse `argv` (config file + overrides) into `root` (default Config) and the namespace.

    Every problem is a ConfigError naming where the value came from (the config file and line,
    or the command line): unknown keys, unreadable values, values outside a field's declared
    choices or range, and malformed config-file lines.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(description, extra, root)
    try:
        ns, unknown = parser.parse_known_args(argv)
    except ConfigError as exc:  # argparse names the option, not where its value came from
        m = re.match(r"argument --([\w]+)", str(exc))
        config = _config_argument(argv)
        lines = _file_lines(config) if config else {}
        if m and m.group(1) in lines and not _given_on_command_line(argv, m.group(1)):
            raise ConfigError(f"{config} line {lines[m.group(1)][1]}: {exc}") from exc
        raise
    config = getattr(ns, "config", None)
    lines = _file_lines(config) if config else {}
    if unknown:
        names = [u.split("=")[0] for u in unknown if u.startswith("-")] or unknown
        where = [f"{config} line {lines[n.lstrip('-').replace('-', '_')][1]}"
                 for n in names if n.lstrip("-").replace("-", "_") in lines and not _given_on_command_line(argv, n)]
        suffix = f" ({', '.join(where)})" if where else (f" (config file {config})" if config else "")
        raise ConfigError(f"unknown option(s) {', '.join(names)}{suffix}; see --help for the valid keys")
    _detach(ns, argv, lines, root or Config)
    try:
        return config_from_namespace(ns, root), ns
    except FieldError as exc:
        if config and exc.key in lines and not _given_on_command_line(argv, exc.key):
            raise ConfigError(f"{config} line {lines[exc.key][1]}: {exc}") from exc
        raise ConfigError(f"command line: {exc}") from exc


def add_json_option(parser) -> None:
    """The tools' `--json FILE` option (an `extra` for parse_config)."""
    parser.add_argument("--json", default="", help="also write the results as JSON to this file")


def write_json_report(path: str | Path, record: dict, indent: int | None = 1) -> None:
    """Write a tool's results as JSON (indent None: one line); failure is a NerfError naming path."""
    try:
        write_text_atomic(path, json.dumps(record, indent=indent) + "\n")
    except OSError as exc:
        raise NerfError(f"{path}: cannot write the JSON results ({exc.strerror})") from exc


def run_report_tool(argv, description: str, root: type | None, job, text, extra=None) -> None:
    """main() of a tool that runs one job and reports a dict of results.

    Parses `root`'s options (None: the training Config) plus `--json` and what `extra(parser)`
    adds, runs `job(cfg) -> dict` (`job(cfg, ns)` when `extra` is given, to read its options),
    writes the JSON report when asked and prints `text(result)`, under `run_command`'s error
    policy (one line on stderr, exit status 2).
    """

    def options(parser) -> None:
        add_json_option(parser)
        if extra is not None:
            extra(parser)

    def body() -> None:
        cfg, ns = parse_config(argv, description, options, root=root)
        result = job(cfg) if extra is None else job(cfg, ns)
        if ns.json:
            write_json_report(ns.json, result)
        print(text(result))

    run_command(body)


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
    __post_init__ = check_fields

    run: str = "runs/demo"  # run directory to render from
    device: str = option("auto", rule=device_problem)  # auto | cpu | cuda | cuda:N
    test: bool = True  # render the test split and report PSNR/SSIM per view
    path: str = option("orbit", rule=camera_path_problem)  # camera path: orbit | spiral | interpolate | none | a nerfstudio camera_path.json
    frames: int = option(120, at_least=1)  # frames of an orbit, spiral or interpolated path
    fps: float = option(30.0, above=0.0)  # video frame rate (a camera_path.json brings its own)
    width: int = option(0, at_least=0)  # output width in pixels (0 = the first training image's, or the camera_path.json's)
    height: int = option(0, at_least=0)  # output height in pixels (0 = the first training image's, or the camera_path.json's)
    downscale: float = option(1.0, above=0.0)  # render the path at 1/downscale of its size (nerfstudio's --downscale-factor)
    path_frame: str = ""  # dataparser_transforms.json of the frame a camera_path.json is in ("" = this run's)
    elevation: float = option(-1.0, rule=elevation_problem)  # orbit elevation in degrees (-1 = mean of the training cameras)
    radius_scale: float = option(1.0, above=0.0)  # orbit radius as a multiple of the training cameras' mean distance
    outputs: str = option("rgb,depth", rule=outputs_problem)  # videos to write: any of rgb, depth, opacity
    frame_format: str = option("mp4", choices=("mp4", "png", "both"))  # mp4 | png | both
    video_quality: int = option(8, at_least=0, at_most=10)  # mp4 quality 0..10 (imageio-ffmpeg's scale; 10 = best, larger files)
    upscale: int = option(1, choices=(1, 2, 4))  # render at 1/upscale resolution and super-resolve (1 = off, or 2, 4)
    sr_weights: str = ""  # super-resolution weights ("" = train or reuse the scene-adapted net)
    sr_steps: int = option(2000, at_least=1)  # steps of scene-adaptive SR training when it is needed
    out: str = ""  # output folder ("" = <run>/renders)
