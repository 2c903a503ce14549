"""Shared pytest setup: the Triton interpreter switch and the session's tiny scene and run.

Without CUDA, Triton kernels run in Triton's interpreter; the switch must be set before anything
imports triton, hence at conftest import time.
"""

import os
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/tiny.py, tests/synthetic_scenes.py

from tiny import RUN_STEPS, SCENE, tiny_config  # noqa: E402


@pytest.fixture(scope="session")
def tiny_scene_path(tmp_path_factory) -> Path:
    """The tiny demo scene (32x32, 24 train / 2 val / 3 test views), generated once."""
    from nerf.datasets.demo import make_demo_scene

    return make_demo_scene(tmp_path_factory.mktemp("tiny") / "scene", SCENE)


@pytest.fixture(scope="session")
def tiny_scene(tiny_scene_path):
    """The tiny scene, loaded (tests must not modify it)."""
    from nerf.datasets import load_scene

    return load_scene(tiny_scene_path)


@pytest.fixture(scope="session")
def tiny_run(tiny_scene_path, tmp_path_factory) -> Path:
    """A run directory trained RUN_STEPS steps on the tiny scene (no video, no mesh), shared
    read-only by the CLI and export tests."""
    from nerf.jobs.train import run_training_job

    runs = tmp_path_factory.mktemp("tiny_runs")
    return run_training_job(tiny_config(runs, tiny_scene_path, steps=RUN_STEPS), quiet=True)["run_dir"]
