"""The tiny demo scene and tiny run every training, CLI and export test shares (not collected).

The scene is generated once per test session (conftest.py's `tiny_scene_path` fixture) and the
run trained once (`tiny_run`); `tiny_config` builds the matching configuration for tests that
train runs of their own.
"""

from __future__ import annotations

from pathlib import Path

from nerf.config import Config, DataConfig, ModelConfig, OutputConfig, SamplerConfig, TrainConfig
from nerf.datasets.demo import DemoSceneConfig

SCENE = DemoSceneConfig(resolution=32, n_train=24, n_val=2, n_test=3, supersample=1)
RUN_STEPS = 10  # steps of the shared tiny run (one checkpoint at the end)


def tiny_config(folder: Path, scene_path: Path, video_frames: int = 0, **train) -> Config:
    """A hash-grid run small enough for a test (8 levels of 2^12 entries, 32^3 grid, 128 march
    steps), its runs folder `folder/runs`; `train` overrides TrainConfig fields."""
    return Config(
        name="tiny", runs_dir=str(Path(folder) / "runs"), device="cpu",
        data=DataConfig(data=str(scene_path)),
        model=ModelConfig(hash_levels=8, hash_log2_size=12, hash_max_resolution=64, hidden_dim=32),
        sampler=SamplerConfig(grid_resolution=32, march_steps=128, grid_warmup=32),
        train=TrainConfig(**{"steps": 20, "target_samples": 8192, "initial_rays": 512,
                             "checkpoint_every": 10, "lr_warmup": 10, **train}),
        output=OutputConfig(video_frames=video_frames, mesh_resolution=0),
    )
