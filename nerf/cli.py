"""What every command line shares: one runner, switches, snake_case flags, errors as one line.

`run_command(body)` is the whole error policy of the entry points: a NerfError (or an
OSError that names its file) prints `error: <message>` as one line on stderr and exits with
status 2; Ctrl-C prints one line and exits with status 130 (the shell's code for SIGINT);
whatever `body` returns is the exit status. Parsers raise ConfigError instead of printing
argparse's usage block, so a bad option reads like every other error.

Flags are snake_case (`--max_image_size`); a kebab-case alias (`--max-image-size`) is
accepted for every flag with an underscore. Booleans are switches: `--half`, `--half true` and
`--half false` all work.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from nerf.errors import ConfigError, NerfError

INTERRUPTED_STATUS = 130  # 128 + SIGINT, what shells report for Ctrl-C
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def parse_bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


parse_bool.__name__ = "boolean"  # argparse names the type in its message: "invalid boolean value"


def one_line(text: str) -> str:
    """Collapse a message to one line (library messages, such as a state-dict diff, may have many)."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def flag_names(name: str) -> list[str]:
    """`--snake_case` and, when it differs, the `--kebab-case` alias."""
    names = [f"--{name}"]
    if "_" in name:
        names.append(f"--{name.replace('_', '-')}")
    return names


def add_switch(parser, name: str, default: bool, help: str = "") -> None:
    """A boolean option usable as `--name`, `--name true` or `--name false`."""
    parser.add_argument(*flag_names(name), dest=name, nargs="?", const=True, default=default,
                        type=parse_bool, metavar="true|false", help=help)


class RaisingErrors:
    """Mixin for argparse parsers: a usage error raises ConfigError instead of exiting."""

    def error(self, message: str):
        raise ConfigError(one_line(message))


class CommandParser(RaisingErrors, argparse.ArgumentParser):
    """argparse for the tools that take positional inputs; errors raise ConfigError."""

    def add_option(self, name: str, **kwargs) -> None:
        self.add_argument(*flag_names(name), dest=name, **kwargs)

    def add_switch(self, name: str, default: bool = False, help: str = "") -> None:
        add_switch(self, name, default, help)


def run_command(body: Callable[[], int | None]) -> None:
    """Run an entry point's body with the shared error policy (see the module docstring)."""
    try:
        status = body()
    except NerfError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        detail = one_line(exc)
        print(f"interrupted{': ' + detail if detail else ''}", file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)
    except OSError as exc:
        if exc.filename is None:  # not a file the user named: a bug, keep the traceback
            raise
        print(f"error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)
    if status:
        sys.exit(status)
