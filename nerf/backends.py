"""Which kernel backends can run in this process: the one place that asks.

Every accelerated op (compositing, the hash grid, ray marching) has a pure-PyTorch backend,
"torch", that runs anywhere, and optional ones:

    "triton"  the triton package imports, and the tensors are CUDA tensors (CUDA available) or
              CPU tensors run by Triton's interpreter (TRITON_INTERPRET=1, slow; for tests)
    "tcnn"    the tinycudann package (tiny-cuda-nn's PyTorch bindings) imports, CUDA tensors
    "numba"   the numba package imports, CPU tensors (the hash grid's CPU kernels)

`usable(name, device)` answers for tensors on `device`; with `device=None` it answers for "some
device of this process" (triton: CUDA available or the interpreter on). `resolve` turns an op's
backend argument into the backend to run: it validates the name against the op's choices,
picks for "auto", and raises `BackendError` naming what is missing when a named backend cannot
run. "auto" never picks an interpreted backend: on a CPU it is the torch path.

Optional packages are imported only when a question needs them (never at import time) and the
answer of the import is cached; the environment variable and `torch.cuda.is_available()` are
read on every call.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from typing import Sequence

import torch

from nerf.errors import ConfigError

KNOWN = ("torch", "triton", "tcnn", "numba")

# What each optional backend needs, for error messages.
REQUIREMENTS = {
    "triton": "the triton package and a CUDA device, or TRITON_INTERPRET=1 for CPU tensors",
    "tcnn": "the tinycudann package (tiny-cuda-nn's PyTorch bindings) and a CUDA device",
    "numba": "the numba package and CPU tensors",
}


class BackendError(ConfigError, ValueError):
    """A backend name is unknown, or the named backend cannot run here.

    A ConfigError (CLIs print it and exit 2) and a ValueError (a bad argument of an op).
    """


@functools.cache
def _imports(module: str) -> bool:
    """True when `module` is installed and imports (the import is tried once per process)."""
    try:
        if importlib.util.find_spec(module) is None:
            return False
        importlib.import_module(module)
    except (ImportError, OSError, ValueError):
        return False
    return True


def triton_interpreted() -> bool:
    """True when Triton's CPU interpreter is switched on (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def _device(device: torch.device | str | None) -> torch.device | None:
    return None if device is None else torch.device(device)


def unusable_reason(name: str, device: torch.device | str | None = None) -> str | None:
    """Why backend `name` cannot run on `device` here, or None when it can.

    Args:
        name: one of `KNOWN`.
        device: where the op's tensors live; None asks about any device of this process.

    Returns:
        None when usable, else a short phrase naming the missing package or device.
    """
    if name not in KNOWN:
        raise BackendError(f"unknown backend {name!r}; known backends are {list(KNOWN)}")
    device = _device(device)
    kind = None if device is None else device.type
    if name == "torch":
        return None
    if name == "triton":
        cuda = torch.cuda.is_available()
        if kind is None and not (cuda or triton_interpreted()):
            return "no CUDA device is available and TRITON_INTERPRET=1 is not set"
        if kind == "cuda" and not cuda:
            return "no CUDA device is available"
        if kind == "cpu" and not triton_interpreted():
            return "CPU tensors need Triton's interpreter and TRITON_INTERPRET=1 is not set"
        if kind not in (None, "cuda", "cpu"):
            return f"triton does not run on {kind} tensors"
        if not _imports("triton"):
            return "the triton package does not import"
        return None
    if name == "tcnn":
        if not torch.cuda.is_available():
            return "no CUDA device is available"
        if kind not in (None, "cuda"):
            return f"tiny-cuda-nn runs on CUDA tensors, not {kind}"
        if not _imports("tinycudann"):
            return "the tinycudann package does not import"
        return None
    # numba: CPU kernels
    if kind not in (None, "cpu"):
        return f"numba kernels run on CPU tensors, not {kind}"
    if not _imports("numba"):
        return "the numba package does not import"
    return None


def usable(name: str, device: torch.device | str | None = None) -> bool:
    """True when backend `name` can run on `device` (None: on some device of this process)."""
    return unusable_reason(name, device) is None


def triton_available(device: torch.device | str | None = None) -> bool:
    """Triton imports and can run on `device` (CUDA tensors, or CPU tensors under the interpreter)."""
    return usable("triton", device)


def tcnn_available(device: torch.device | str | None = None) -> bool:
    """tinycudann imports and CUDA is available (and `device`, if given, is a CUDA device)."""
    return usable("tcnn", device)


def numba_available(device: torch.device | str | None = None) -> bool:
    """numba imports (and `device`, if given, is the CPU)."""
    return usable("numba", device)


def available(choices: Sequence[str], device: torch.device | str | None = None) -> list[str]:
    """The backends among `choices` that can run on `device`, in the order of `choices`."""
    return [name for name in choices if usable(name, device)]


def _native(name: str, device: torch.device) -> bool:
    """Usable on `device` without an interpreter: what "auto" may pick."""
    if name == "triton" and device.type != "cuda":
        return False
    return usable(name, device)


def resolve(
    backend: str,
    choices: Sequence[str],
    device: torch.device | str,
    op: str,
    auto: Sequence[str] = (),
) -> str:
    """The backend an op runs for tensors on `device`: "auto" resolved, an unusable one refused.

    Args:
        backend: "auto" or one of `choices`.
        choices: the op's backends, "torch" among them.
        device: where the op's tensors live.
        op: the op's name, the prefix of error messages ("composite", "hash grid", "march").
        auto: the backends "auto" tries, in order, before "torch"; it takes the first that runs
            natively on `device` (never Triton's CPU interpreter).

    Returns:
        One of `choices`.

    Raises:
        BackendError: the name is unknown, or that backend cannot run on `device` here (the
            message names what is missing and the backends that can run).
    """
    device = torch.device(device)
    if backend == "auto":
        for name in auto:
            if _native(name, device):
                return name
        return "torch"
    if backend not in choices:
        raise BackendError(f"{op}: unknown backend {backend!r}; choose 'auto' or one of {list(choices)}")
    require(backend, device, op, choices)
    return backend


def require(
    name: str,
    device: torch.device | str | None,
    op: str,
    choices: Sequence[str] = (),
) -> None:
    """Raise BackendError when backend `name` cannot run on `device` (None: on any device here).

    Args:
        name: one of `KNOWN`.
        device: where the op's tensors live, or None.
        op: the op's name, the prefix of the message.
        choices: the op's backends; the message lists those that can run instead.
    """
    reason = unusable_reason(name, device)
    if reason is None:
        return
    where = "here" if device is None else f"on {torch.device(device)} here"
    alternatives = [b for b in available(choices, device) if b != name] if choices else []
    hint = f"; use backend {' or '.join(repr(b) for b in alternatives)}" if alternatives else ""
    raise BackendError(
        f"{op}: backend {name!r} cannot run {where}: {reason} (needs {REQUIREMENTS[name]}){hint}"
    )
