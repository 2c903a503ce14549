"""Config: generated parser, file + CLI precedence, unknown keys, round trip."""

import pytest

from nerf.config import Config, config_to_text, load_config_file, parse_config
from nerf.errors import ConfigError


def test_defaults_come_from_dataclasses():
    cfg, _ = parse_config([])
    assert cfg == Config()


def test_file_then_command_line_override(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("data = somewhere\nlr = 0.02\namp = false\nsteps = 7\n")
    cfg, _ = parse_config(["--config", str(f), "--steps", "9"])
    assert cfg.data.data == "somewhere"
    assert cfg.train.lr == 0.02
    assert cfg.train.amp is False
    assert cfg.train.steps == 9


@pytest.mark.parametrize("where", ["file", "cli"])
def test_unknown_key_is_named(tmp_path, where):
    f = tmp_path / "c.txt"
    f.write_text("no_such_key = 3\n" if where == "file" else "steps = 1\n")
    argv = ["--config", str(f)] + ([] if where == "file" else ["--bogus_flag", "1"])
    with pytest.raises(ConfigError, match="no_such_key" if where == "file" else "bogus_flag"):
        parse_config(argv)


def test_bad_value_type_is_a_config_error_naming_the_option():
    with pytest.raises(ConfigError, match="--steps.*many"):
        parse_config(["--steps", "many"])


@pytest.mark.parametrize("argv, value", [([], True), (["--overwrite"], True), (["--overwrite", "true"], True),
                                         (["--overwrite", "false"], False), (["--overwrite=no"], False)])
def test_booleans_are_switches_and_take_values(argv, value):
    cfg, _ = parse_config(argv + ["--amp"]) if value else parse_config(argv + ["--amp", "false"])
    assert cfg.overwrite is (value if argv else False) and cfg.train.amp is value


@pytest.mark.parametrize("argv, words", [
    (["--loss", "l1"], ["loss", "'l1'", "mse, huber"]),
    (["--hash_backend", "cuda"], ["hash_backend", "torch, triton, tcnn, numba"]),
    (["--steps", "-5"], ["steps = -5", ">= 1"]),
    (["--target_samples", "-1"], ["target_samples", ">= 1"]),
    (["--march_steps", "0"], ["march_steps = 0", ">= 1"]),
    (["--render_chunk", "0"], ["render_chunk = 0"]),
    (["--lr", "-0.01"], ["lr = -0.01", "> 0.0"]),
    (["--lr", "nan"], ["lr = nan"]),
    (["--max_seconds", "-1"], ["max_seconds", ">= 0.0"]),
    (["--checkpoint_every", "0"], ["checkpoint_every = 0", ">= 1"]),
    (["--keep_checkpoints", "0"], ["keep_checkpoints = 0", ">= 1"]),
    (["--device", "gpu"], ["device = 'gpu'", "cuda:N"]),
    (["--name", ""], ["name = ''", "plain folder name"]),
    (["--name", ".."], ["name = '..'"]),
    (["--name", "a/b"], ["name = 'a/b'"]),
    (["--video_elevation", "90"], ["video_elevation = 90.0", "89"]),
])
def test_values_outside_the_declared_choices_or_ranges_are_refused(argv, words):
    with pytest.raises(ConfigError) as info:
        parse_config(argv)
    message = str(info.value)
    assert "\n" not in message and message.startswith("command line:")
    for word in words:
        assert word in message, (word, message)


def test_render_options_are_checked_as_parsed():
    from nerf.config import RenderConfig

    for argv, word in ((["--frame_format", "gif"], "mp4, png, both"), (["--upscale", "0"], "1, 2, 4"),
                       (["--upscale", "3"], "1, 2, 4"), (["--elevation", "90"], "89"), (["--fps", "0"], "fps"),
                       (["--radius_scale", "0"], "radius_scale"), (["--outputs", "rgb,normals"], "opacity"),
                       (["--path", "circle"], "camera_path"), (["--frames", "0"], "frames = 0")):
        with pytest.raises(ConfigError, match=word):
            parse_config(argv, root=RenderConfig)


def test_help_lists_choices_and_ranges(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_config(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "[one of mse, huber]" in text and "[>= 1]" in text and "--overwrite [true|false]" in text


def test_kebab_case_aliases(tmp_path):
    cfg, _ = parse_config(["--max-rays", "1024", "--random-background", "false"])
    assert cfg.train.max_rays == 1024 and cfg.train.random_background is False


@pytest.mark.parametrize("text, line, words", [
    ("name = x\nlr = 0.1\nsteps = 5\nlr = 0.2\n", 4, ["lr is set twice", "line 2"]),
    ("name = x\nmax_rays = 9\nmax-rays = 10\n", 3, ["set twice"]),
    ("name = x\n[train]\nsteps = 5\n", 2, ["section header", "[train]"]),
    ("# comment\nsteps 5\n", 2, ["'steps 5'", "no '='"]),
    ("steps: 5\n", 1, ["no '='"]),
    ("name = x\nloss = l1  # typo\n", 2, ["loss = 'l1'", "mse, huber"]),
    ("steps = many\n", 1, ["--steps", "many"]),
    ("learning_rat = 3\n", 1, ["learning_rat", "unknown"]),
])
def test_config_file_errors_name_the_file_and_line(tmp_path, text, line, words):
    f = tmp_path / "c.txt"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        parse_config(["--config", str(f)])
    message = str(info.value)
    assert f"{f} line {line}" in message, message
    for word in words:
        assert word in message, (word, message)


def test_command_line_overrides_a_bad_file_value(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("loss = l1\n")
    cfg, _ = parse_config(["--config", str(f), "--loss", "huber"])
    assert cfg.train.loss == "huber"


def test_generate_demo_from_a_file_holds_only_for_that_files_data(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("data = data/demo\ngenerate_demo = true\n")
    assert parse_config(["--config", str(f)])[0].data.generate_demo is True
    mistyped, _ = parse_config(["--config", str(f), "--data", str(tmp_path / "my_scen")])
    assert mistyped.data.generate_demo is False  # never generated at a --data from the command line
    asked, _ = parse_config(["--config", str(f), "--data", str(tmp_path / "d"), "--generate_demo"])
    assert asked.data.generate_demo is True


def test_resolved_config_round_trips(tmp_path):
    cfg, _ = parse_config(["--lr", "0.003", "--model", "vanilla", "--random_background", "false"])
    path = tmp_path / "config.txt"
    path.write_text(config_to_text(cfg))
    assert load_config_file(path) == cfg


def test_configs_folder_files_parse():
    from pathlib import Path

    for path in sorted((Path(__file__).parents[1] / "configs").glob("*.txt")):
        load_config_file(path)
