"""The viewer's options: one frozen dataclass, shared by `nerf-view` and `train_nerf.py --viewer`.

Kept out of `nerf.config` so that the run's resolved configuration (config.txt) never holds
viewer settings: watching a run must not make it a different run.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from nerf.config import add_dataclass_options, config_from_namespace
from nerf.errors import ConfigError


@dataclass(frozen=True)
class ViewerConfig:
    host: str = "127.0.0.1"  # address the viewer listens on; another than loopback lets other machines in, WITHOUT authentication
    port: int = 7007  # port of the viewer (the next free one when taken; 0 = any free port)
    moving_resolution: int = 128  # longer side, in pixels, of the frames rendered while the camera moves
    rest_resolution: int = 512  # longer side of the finest frame, reached by doubling once the camera rests
    training_resolution: int = 256  # finest frame while training runs (the viewer shares the CPU with it)
    rest_seconds: float = 0.15  # a camera still for this long is at rest
    refresh_seconds: float = 1.0  # while training, the viewer takes the newest weights at most this often
    thumbnail_size: int = 64  # longer side of the training photos shown on their camera frustums
    jpeg_quality: int = 85  # quality of the frames sent to the browser


@dataclass(frozen=True)
class ViewJobConfig:
    run: str = "runs/demo"  # run directory to view
    device: str = "auto"  # auto | cpu | cuda | cuda:N
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
    """A ConfigError naming the option for values the viewer cannot use; the host must be an
    address of this machine (viser would otherwise retry port after port)."""
    if not 0 <= cfg.port <= 65535:
        raise ConfigError(f"port = {cfg.port}: expected 0 to 65535")
    for name in ("moving_resolution", "rest_resolution", "training_resolution", "thumbnail_size"):
        if getattr(cfg, name) < 8:
            raise ConfigError(f"{name} = {getattr(cfg, name)}: expected at least 8 pixels")
    if cfg.rest_resolution < cfg.moving_resolution:
        raise ConfigError(f"rest_resolution = {cfg.rest_resolution}: below moving_resolution = "
                          f"{cfg.moving_resolution}")
    if not 1 <= cfg.jpeg_quality <= 100:
        raise ConfigError(f"jpeg_quality = {cfg.jpeg_quality}: expected 1 to 100")
    if cfg.rest_seconds < 0 or cfg.refresh_seconds < 0:
        raise ConfigError("rest_seconds and refresh_seconds must be >= 0")
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
