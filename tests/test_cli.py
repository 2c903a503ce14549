"""The command-line entry points: bad input exits with status 2 and a message naming the problem;
good input writes the promised files. Each `main(argv)` runs in-process on one tiny run."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from tiny import SCENE


ROOT = Path(__file__).resolve().parents[1]
LATTICE = 24  # lattice resolution of the successful mesh export (small: the run is tiny)


def load_cli(relative: str):
    """Import a script's module from its file (scripts are not a package)."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(f"cli_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cli():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return {
        "train": load_cli("train_nerf.py").main,
        "render": load_cli("render.py").main,
        "extract": load_cli("tools/extract_mesh.py").main,
        "evaluate": load_cli("tools/evaluate_mesh.py").main,
        "benchmark_sr": load_cli("tools/benchmark_sr.py").main,
    }


def exits_with_2(main, argv, capsys) -> str:
    """Run main(argv), expect SystemExit(2), return what it printed to stderr."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def not_a_run(tmp_path):
    folder = tmp_path / "empty_run"
    folder.mkdir()
    return folder


@pytest.fixture
def run_without_checkpoints(tmp_path, tiny_run):
    folder = tmp_path / "fresh_run"
    folder.mkdir()
    shutil.copy(tiny_run / "config.txt", folder / "config.txt")
    return folder


@pytest.mark.parametrize("tool", ["render", "extract", "evaluate", "benchmark_sr"])
def test_run_without_config_txt(cli, tool, not_a_run, capsys):
    extra = ["--reextract", "true"] if tool == "evaluate" else []
    err = exits_with_2(cli[tool], ["--run", str(not_a_run), "--device", "cpu", *extra], capsys)
    assert str(not_a_run) in err and "config.txt" in err


@pytest.mark.parametrize("tool", ["render", "extract", "evaluate", "benchmark_sr"])
def test_run_without_checkpoints(cli, tool, run_without_checkpoints, capsys):
    extra = ["--reextract", "true"] if tool == "evaluate" else []
    err = exits_with_2(cli[tool], ["--run", str(run_without_checkpoints), "--device", "cpu", *extra], capsys)
    assert "no checkpoint" in err and str(run_without_checkpoints) in err


@pytest.mark.parametrize("tool", ["train", "render", "extract", "evaluate", "benchmark_sr"])
def test_unknown_option(cli, tool, tiny_run, capsys):
    err = exits_with_2(cli[tool], ["--run" if tool != "train" else "--name", str(tiny_run),
                                   "--no_such_key", "3"], capsys)
    assert "--no_such_key" in err and "unknown" in err


def test_unknown_key_in_config_file(cli, tmp_path, capsys):
    config = tmp_path / "bad.txt"
    config.write_text("name = x\nlearning_rat = 0.1\n")
    err = exits_with_2(cli["train"], ["--config", str(config), "--runs_dir", str(tmp_path)], capsys)
    assert "learning_rat" in err and str(config) in err


def test_train_with_a_missing_config_file(cli, tmp_path, capsys):
    missing = tmp_path / "nowhere.txt"
    err = exits_with_2(cli["train"], ["--config", str(missing)], capsys)
    assert str(missing) in err


def test_train_into_an_unwritable_runs_dir(cli, tiny_scene_path, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    err = exits_with_2(cli["train"], ["--data", str(tiny_scene_path), "--runs_dir", str(blocker / "runs"),
                                      "--steps", "1", "--device", "cpu"], capsys)
    assert str(blocker) in err


def test_train_on_a_missing_scene(cli, tmp_path, capsys):
    missing = tmp_path / "no_scene_here"
    err = exits_with_2(cli["train"], ["--data", str(missing), "--runs_dir", str(tmp_path / "runs"),
                                      "--device", "cpu"], capsys)
    assert str(missing) in err


def test_render_camera_path_without_frames(cli, tiny_run, tmp_path, capsys):
    path = tmp_path / "camera_path.json"
    path.write_text(json.dumps({"render_width": 16, "render_height": 16, "fps": 10, "camera_path": []}))
    err = exits_with_2(cli["render"], ["--run", str(tiny_run), "--device", "cpu", "--test", "false",
                                       "--path", str(path), "--out", str(tmp_path / "out")], capsys)
    assert str(path) in err and "camera_path" in err


def test_render_into_an_unwritable_folder(cli, tiny_run, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "renders"
    err = exits_with_2(cli["render"], ["--run", str(tiny_run), "--device", "cpu", "--out", str(out)], capsys)
    assert str(out) in err and "cannot create" in err


def test_extract_mesh_into_an_unwritable_folder(cli, tiny_run, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "mesh.ply"
    level = iso_level_inside_the_density_range(tiny_run)  # the mesh itself is fine
    err = exits_with_2(cli["extract"], ["--run", str(tiny_run), "--device", "cpu", "--resolution",
                                        str(LATTICE), "--iso_level", repr(level), "--out", str(out)], capsys)
    assert str(blocker) in err and "file" in err


def test_extract_mesh_with_an_empty_iso_surface(cli, tiny_run, tmp_path, capsys):
    err = exits_with_2(cli["extract"], ["--run", str(tiny_run), "--device", "cpu", "--resolution", "16",
                                        "--iso_level", "1e9", "--out", str(tmp_path / "m.ply")], capsys)
    assert "empty iso-surface" in err and "iso level" in err
    assert not (tmp_path / "m.ply").exists()


def test_extract_mesh_over_the_memory_budget(cli, tiny_run, tmp_path, capsys):
    err = exits_with_2(cli["extract"], ["--run", str(tiny_run), "--device", "cpu", "--resolution", "100000",
                                        "--out", str(tmp_path / "m.ply")], capsys)
    assert "resolution 100000" in err and "GiB" in err


def test_render_writes_metrics_and_video(cli, tiny_run, tmp_path, capsys):
    out = tmp_path / "renders"
    cli["render"](["--run", str(tiny_run), "--device", "cpu", "--frames", "3", "--out", str(out)])
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["views"] == SCENE.n_test and np.isfinite(metrics["psnr"])
    import imageio.v3 as iio

    frames = iio.imread(out / "rgb_orbit.mp4")
    assert frames.shape[0] == 3 and frames.shape[1:] == (32, 32, 3)
    assert "PSNR" in capsys.readouterr().out


def iso_level_inside_the_density_range(run_dir) -> float:
    """Halfway between the median and the largest density the field has on the export lattice."""
    from nerf.export.mesh import density_lattice
    from nerf.jobs.run import load_trained_run

    run = load_trained_run(run_dir, "cpu")
    grid = run.renderer.grid
    sigma = density_lattice(run.renderer.field.query_density, run.scene.aabb, LATTICE,
                            occupied_fn=grid.is_occupied if grid is not None else None).numpy()
    median, top = float(np.median(sigma)), float(sigma.max())
    assert top > median, "the tiny run's field is constant on the lattice"
    return 0.5 * (median + top)


def test_extract_mesh_then_evaluate_it(cli, tiny_run, tmp_path, capsys):
    level = iso_level_inside_the_density_range(tiny_run)
    out = tmp_path / "mesh.ply"
    cli["extract"](["--run", str(tiny_run), "--device", "cpu", "--resolution", str(LATTICE),
                    "--iso_level", repr(level), "--out", str(out)])
    mesh = trimesh.load(out, process=False)
    assert len(mesh.faces) > 0 and "wrote" in capsys.readouterr().out

    report = tmp_path / "eval.json"
    cli["evaluate"](["--run", str(tiny_run), "--mesh", str(out), "--points", "2000",
                     "--json", str(report)])
    result = json.loads(report.read_text())
    assert result["faces"] == len(mesh.faces) and result["vertices"] == len(mesh.vertices)
    assert 0 < result["chamfer_l1_fraction"] < 1 and 0 <= result["color_error_shaded"] <= 1
    assert 0 < result["seen_chamfer_l1_fraction"] < 1 and 0 < result["seen_fraction_gt"] <= 1
    assert "chamfer_l1" in capsys.readouterr().out


def test_benchmark_sr_on_the_tiny_run(cli, tiny_run, tmp_path, capsys):
    report = tmp_path / "sr.json"
    cli["benchmark_sr"](["--run", str(tiny_run), "--device", "cpu", "--views", "1", "--sr_steps", "2",
                         "--weights", "none", "--error_fractions", "0,1", "--json", str(report)])
    result = json.loads(report.read_text())
    assert result["views"] == 1 and result["lr_size"] == "8x8" and result["hr_size"] == "32x32"
    assert set(result["methods"]) == set(result["clean_methods"]) == {"bicubic", "adapted"}
    clean = result["clean_methods"]
    assert result["clean_adapted_gain_db"] == pytest.approx(clean["adapted"]["psnr"] - clean["bicubic"]["psnr"])
    assert 0 < result["render_psnr"] < 100
    exact, full = result["error_sweep"]  # f = 0 scores the box-filtered photos, f = 1 the renders
    assert exact["input_psnr"] is None and full["input_psnr"] == pytest.approx(result["render_psnr"])
    for row, methods in ((exact, clean), (full, result["methods"])):
        assert row["bicubic"] == pytest.approx(methods["bicubic"]["psnr"], abs=1e-4)
        assert row["adapted"] == pytest.approx(methods["adapted"]["psnr"], abs=1e-4)
    assert (tiny_run / "sr" / "adapted_x4.pth").is_file()
    out = capsys.readouterr().out
    assert "adapted - bicubic" in out and "f = 1.00" in out


def test_benchmark_sr_refuses_bad_error_fractions(cli, tiny_run, capsys):
    with pytest.raises(SystemExit) as exc:
        cli["benchmark_sr"](["--run", str(tiny_run), "--device", "cpu", "--error_fractions", "0.5,2"])
    assert exc.value.code == 2 and "outside [0, 1]" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [["--path", "missing_path.json"], ["--sr_weights", "missing.pth", "--upscale", "4"]])
def test_render_refuses_a_bad_path_or_weights_before_rendering_the_test_split(cli, tiny_run, tmp_path, capsys, bad):
    out = tmp_path / "out"
    err = exits_with_2(cli["render"], ["--run", str(tiny_run), "--device", "cpu", "--out", str(out), *bad], capsys)
    assert "missing" in err and err.count("\n") == 1
    assert not (out / "test_metrics.json").exists() and not (out / "test").exists()


def test_every_command_prints_help_and_refuses_a_bad_option_in_one_line(capsys):
    """Every entry point goes through nerf.cli.run_command: --help exits 0, a bad option exits 2."""
    scripts = ["train_nerf.py", "render.py"] + [f"tools/{p.name}" for p in sorted((ROOT / "tools").glob("*.py"))
                                                 if p.name != "__init__.py"]
    for script in scripts:
        main = load_cli(script).main
        with pytest.raises(SystemExit) as info:
            main(["--help"])
        assert info.value.code == 0, script
        assert "--help" in capsys.readouterr().out
        with pytest.raises(SystemExit) as info:
            main(["--no_such_option", "1"])
        assert info.value.code == 2, script
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, (script, err)
        assert "no_such_option" in err or "required" in err, (script, err)  # required inputs come first
