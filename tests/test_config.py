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


def test_bad_value_type_exits_with_status_2(tmp_path):
    with pytest.raises(SystemExit) as exc:
        parse_config(["--steps", "many"])
    assert exc.value.code == 2


def test_resolved_config_round_trips(tmp_path):
    cfg, _ = parse_config(["--lr", "0.003", "--model", "vanilla", "--random_background", "false"])
    path = tmp_path / "config.txt"
    path.write_text(config_to_text(cfg))
    assert load_config_file(path) == cfg


def test_configs_folder_files_parse():
    from pathlib import Path

    for path in sorted((Path(__file__).parents[1] / "configs").glob("*.txt")):
        load_config_file(path)
