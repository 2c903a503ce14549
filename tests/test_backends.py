"""Backend availability and resolution (`nerf.backends`), and the ops that ask it.

The environment is simulated: TRITON_INTERPRET and `torch.cuda.is_available` with monkeypatch,
which packages import by replacing `nerf.backends._imports`. Nothing here runs a kernel.
"""

import pytest
import torch

from nerf import backends
from nerf.encodings import HashGrid, available_hashgrid_backends
from nerf.errors import ConfigError
from nerf.render.composite import available_backends, pick_backend
from nerf.sampling import march as march_module

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def machine(monkeypatch):
    """Set up a simulated machine: machine(cuda=..., interpret=..., installed=(...))."""

    def configure(cuda=False, interpret=False, installed=("triton",)):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        if interpret:
            monkeypatch.setenv("TRITON_INTERPRET", "1")
        else:
            monkeypatch.delenv("TRITON_INTERPRET", raising=False)
        monkeypatch.setattr(backends, "_imports", lambda module: module in installed)

    return configure


def test_auto_on_cpu_without_interpreter_picks_torch(machine):
    machine(cuda=False, interpret=False)
    assert backends.resolve("auto", ("torch", "triton"), CPU, "op", auto=("triton",)) == "torch"
    assert pick_backend("auto", CPU) == "torch"
    assert march_module.pick_backend("auto", CPU) == "torch"
    assert HashGrid(2, 2, 8, 4, 16, backend="auto").resolve_backend(CPU) == "torch"
    assert available_backends() == ["torch"]
    assert available_hashgrid_backends() == ["torch"]


def test_auto_on_cpu_with_interpreter_still_picks_torch(machine):
    machine(cuda=False, interpret=True, installed=("triton", "tinycudann"))
    assert backends.usable("triton", CPU)
    assert pick_backend("auto", CPU) == "torch"
    assert march_module.pick_backend("auto", CPU) == "torch"
    assert HashGrid(2, 2, 8, 4, 16, backend="auto").resolve_backend(CPU) == "torch"
    assert available_backends() == ["torch", "triton"]
    assert available_hashgrid_backends() == ["torch", "triton"]  # tcnn needs CUDA


def test_auto_on_cpu_picks_numba_never_the_interpreter(machine):
    machine(cuda=False, interpret=True, installed=("triton", "tinycudann", "numba"))
    assert pick_backend("auto", CPU) == "numba"
    assert pick_backend("auto", CPU, torch.float64) == "torch"  # the numba kernels are float32 paths
    assert march_module.pick_backend("auto", CPU) == "numba"
    assert HashGrid(2, 2, 8, 4, 16, backend="auto").resolve_backend(CPU) == "numba"
    assert available_backends() == ["torch", "triton", "numba"]
    assert available_hashgrid_backends() == ["torch", "triton", "numba"]


def test_auto_on_cuda_prefers_the_kernels(machine):
    machine(cuda=True, installed=("triton", "tinycudann"))
    assert pick_backend("auto", CUDA) == "triton"
    assert march_module.pick_backend("auto", CUDA) == "triton"
    assert HashGrid(2, 2, 8, 4, 16, backend="auto").resolve_backend(CUDA) == "tcnn"
    assert available_hashgrid_backends() == ["torch", "triton", "tcnn"]
    machine(cuda=True, installed=("triton",))
    assert HashGrid(2, 2, 8, 4, 16, backend="auto").resolve_backend(CUDA) == "triton"
    machine(cuda=True, installed=())
    assert pick_backend("auto", CUDA) == "torch"
    assert HashGrid(2, 2, 8, 4, 16, backend="auto").resolve_backend(CUDA) == "torch"


def test_named_triton_on_cpu_without_interpreter_is_refused_clearly(machine):
    machine(cuda=True, interpret=False)  # CUDA exists, but these are CPU tensors
    with pytest.raises(backends.BackendError, match="composite: backend 'triton' cannot run on cpu.*INTERPRET=1"):
        pick_backend("triton", CPU)
    with pytest.raises(ValueError, match="march: backend 'triton'.*TRITON_INTERPRET"):
        march_module.pick_backend("triton", CPU)
    with pytest.raises(ConfigError, match="hash grid: backend 'triton'.*TRITON_INTERPRET"):
        HashGrid(2, 2, 8, 4, 16, backend="triton").resolve_backend(CPU)


def test_message_names_the_missing_package_or_device(machine):
    machine(cuda=True, installed=())
    with pytest.raises(ValueError, match="the triton package does not import"):
        pick_backend("triton", CUDA)
    machine(cuda=False, interpret=False)
    with pytest.raises(ValueError, match="no CUDA device"):
        pick_backend("triton", CUDA)
    with pytest.raises(ConfigError, match="tinycudann.*CUDA") as error:
        HashGrid(2, 2, 8, 4, 16, backend="tcnn")
    assert "no CUDA device" in str(error.value) and "use backend 'torch'" in str(error.value)
    machine(cuda=True, installed=("triton",))
    with pytest.raises(ConfigError, match="the tinycudann package does not import.*use backend 'torch' or 'triton'"):
        HashGrid(2, 2, 8, 4, 16, backend="tcnn")


def test_unknown_backend_lists_the_choices(machine):
    machine()
    with pytest.raises(backends.BackendError, match=r"composite: unknown backend 'cuda'; choose 'auto' or one of"):
        pick_backend("cuda", CPU)
    with pytest.raises(ValueError, match="march: unknown backend 'tcnn'"):
        march_module.pick_backend("tcnn", CPU)
    with pytest.raises(ValueError, match="unknown backend"):
        backends.usable("cuda")


def test_backend_error_is_a_config_error_and_a_value_error():
    assert issubclass(backends.BackendError, ConfigError) and issubclass(backends.BackendError, ValueError)


def test_availability_queries(machine):
    machine(cuda=False, interpret=False, installed=("triton", "tinycudann", "numba"))
    assert not backends.triton_available() and not backends.tcnn_available()
    assert backends.numba_available() and backends.numba_available(CPU) and not backends.numba_available(CUDA)
    assert backends.available(backends.KNOWN, CPU) == ["torch", "numba"]
    machine(cuda=True, interpret=False, installed=("triton", "tinycudann"))
    assert backends.triton_available() and backends.triton_available(CUDA) and not backends.triton_available(CPU)
    assert backends.tcnn_available(CUDA) and not backends.tcnn_available(CPU)
    assert not backends.numba_available()
    assert backends.available(backends.KNOWN) == ["torch", "triton", "tcnn"]


def test_the_real_import_check_answers_without_raising():
    for module in ("triton", "tinycudann", "numba", "surely_not_an_installed_module"):
        assert isinstance(backends._imports(module), bool)
    assert backends._imports("surely_not_an_installed_module") is False
    assert backends._imports("torch") is True
