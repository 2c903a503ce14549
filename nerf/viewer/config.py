"""The viewer's options: one frozen dataclass, shared by `nerf-view` and `train_nerf.py --viewer`.

Kept out of `nerf.config` so that the run's resolved configuration (config.txt) never holds
viewer settings: watching a run must not make it a different run.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from nerf.config import add_dataclass_options, check_fields, config_from_namespace, device_problem, option
from nerf.errors import ConfigError


@dataclass(frozen=True)
class ViewerConfig:
    __post_init__ = check_fields

    host: str = "127.0.0.1"  # address the viewer listens on; another than loopback lets other machines in, WITHOUT authentication
    port: int = option(7007, at_least=0, at_most=65535)  # port of the viewer (the next free one when taken; 0 = any free port)
    moving_resolution: int = option(128, at_least=8)  # longer side, in pixels, of the frames rendered while the camera moves
    rest_resolution: int = option(512, at_least=8)  # longer side of the finest frame, reached by doubling once the camera rests
    training_resolution: int = option(256, at_least=8)  # finest frame while training runs (the viewer shares the CPU with it)
    rest_seconds: float = option(0.15, at_least=0.0)  # a camera still for this long is at rest
    refresh_seconds: float = option(1.0, at_least=0.0)  # while training, the viewer takes the newest weights at most this often
    thumbnail_size: int = option(64, at_least=8)  # longer side of the training photos shown on their camera frustums
    jpeg_quality: int = option(85, at_least=1, at_most=100)  # quality of the frames sent to the browser


@dataclass(frozen=True)
class ViewJobConfig:
    __post_init__ = check_fields

    run: str = "runs/demo"  # run directory to view
    device: str = option("auto", rule=device_problem)  # auto | cpu | cuda | cuda:N
    view: ViewerConfig = field(default_factory=ViewerConfig)


@dataclass(frozen=True)
class WatchConfig:
    viewer: bool = False  # open the browser viewer on the run while it trains (stays open after; Ctrl+C quits)
    view: ViewerConfig = field(default_factory=ViewerConfig)


def add_watch_options(parser) -> None:
    """train_nerf.py's `--viewer` and the viewer's options (an `extra` for parse_config)."""
    add_dataclass_options(parser, WatchConfig, first_group="viewer")


def watch_config(ns) -> WatchConfig:
    return config_from_namespace(ns, root=WatchConfig)


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_viewer_config(cfg: ViewerConfig) -> None:
    """What the declared ranges cannot say: the rest resolution is not below the moving one, and
    the host is an address of this machine (viser would otherwise retry port after port)."""
    if cfg.rest_resolution < cfg.moving_resolution:
        raise ConfigError(f"rest_resolution = {cfg.rest_resolution}: below moving_resolution = "
                          f"{cfg.moving_resolution}")
    try:
        with socket.socket(_family(cfg.host), socket.SOCK_STREAM) as s:
            s.bind((cfg.host, 0))
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"host = {cfg.host!r}: cannot listen on that address ({exc})") from exc


def _family(host: str) -> int:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return socket.AF_INET


def remote_warning(host: str, port: int) -> str | None:
    """The warning printed when the viewer listens beyond this machine (None on loopback)."""
    if is_loopback(host):
        return None
    return (f"warning: the viewer listens on {host}:{port} with NO authentication: anyone who can "
            "reach this port sees the scene and can write exports into the run folder")
