"""The engine benchmark runs both paths on the same state and reports consistent figures."""

import pytest

from nerf.config import load_config_file
from nerf.errors import CheckpointError
from nerf.jobs.engine_bench import EngineBenchSettings, benchmark_engine, format_report
from nerf.train.checkpoint import latest_checkpoint, load_checkpoint


@pytest.mark.parametrize("from_run", [False, True])
def test_engine_benchmark_on_the_tiny_scene(tiny_run, from_run):
    cfg = load_config_file(tiny_run / "config.txt")
    settings = EngineBenchSettings(warmup_steps=2, steps=2, views=1, repeats=1, run=str(tiny_run) if from_run else "")
    result = benchmark_engine(cfg, settings, progress=False)
    for name in ("reference", "default"):
        assert result[f"{name}_train_samples_per_s"] > 0 and result[f"{name}_render_rays_per_s"] > 0
    assert "hash grid torch" in result["reference_backends"]  # the reference path is the torch one
    assert result["render_speedup"] == pytest.approx(
        result["default_render_rays_per_s"] / result["reference_render_rays_per_s"])
    newest = load_checkpoint(latest_checkpoint(tiny_run))["step"]
    assert result["start_step"] == (newest if from_run else 2)
    assert "medians of 1" in format_report(result)


def test_engine_benchmark_refuses_a_run_without_checkpoints(tiny_run, tmp_path):
    cfg = load_config_file(tiny_run / "config.txt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        benchmark_engine(cfg, EngineBenchSettings(run=str(tmp_path)), progress=False)
