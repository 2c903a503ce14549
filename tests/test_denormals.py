"""Denormals flushed to zero in every thread of torch's and numba's pools, set by the jobs."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                                reason="FTZ/DAZ are x86 MXCSR modes")

# 2 threads each: torch's op and numba's prange loop both reach a worker thread
PROBE = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import numba, numpy as np, torch
torch.set_num_threads(2)
numba.set_num_threads(2)
if sys.argv[1] == "late":
    torch.ones(1 << 20).mul_(2.0)  # torch's workers start before the call
import nerf.jobs.train, nerf.jobs.run  # importing the jobs must not start a pool either
from nerf.denormals import flush_denormals

@numba.njit(parallel=True)
def halve(x):
    out = np.empty_like(x)
    for i in numba.prange(x.shape[0]):
        out[i] = x[i] * np.float32(0.5)
    return out

ok = flush_denormals()
tiny = np.full(1 << 17, 0x00400000, dtype=np.int32).view(np.float32)  # 5.9e-39, a denormal
torch_zero = bool((torch.from_numpy(tiny) * 0.5 == 0).all())
numba_zero = bool((halve(tiny) == 0).all())
print(ok, torch_zero, numba_zero)
"""


def probe(mode: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_flushing_first_thing_reaches_torch_and_numba_workers():
    assert probe("first") == ["True", "True", "True"]


def test_a_call_after_torch_workers_started_reports_it():
    ok, torch_zero, _ = probe("late")
    assert ok == "False" and torch_zero == "False"  # the worker thread still computes denormals


JOB_PROBE = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import torch
from nerf.config import parse_config
from nerf.denormals import denormals_flushed
from nerf.jobs.run import load_trained_run
from nerf.jobs.train import run_training_job
try:
    if sys.argv[1] == "train":
        run_training_job(parse_config(["--data", sys.argv[2], "--runs_dir", sys.argv[2]])[0], quiet=True)
    else:
        load_trained_run(sys.argv[2])
except Exception as e:  # the job refuses the missing data; the process set-up happened first
    print(type(e).__name__)
print(denormals_flushed())
"""


@pytest.mark.parametrize("job", ["train", "load"])
def test_the_jobs_flush_first_thing(job, tmp_path):
    out = subprocess.run([sys.executable, "-c", JOB_PROBE, job, str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    refused, flushed = out.stdout.split()
    assert refused.endswith("Error") and flushed == "True"
