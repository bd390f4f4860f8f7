"""Every command and option is documented, with its default."""

from __future__ import annotations

import shutil

import pytest
import typer

from rosprompt_cli.commands import app


def test_top_level_help_lists_commands(cli):
    out = cli("--help").stdout.decode()
    for command in ("train", "label", "eval"):
        assert command in out


def test_console_script_is_installed():
    assert shutil.which("rosprompt"), "pip install provides the 'rosprompt' command"


@pytest.mark.parametrize("command", ["train", "label", "eval"])
def test_every_option_has_help_and_default(cli, command):
    out = " ".join(cli(command, "--help", env={"COLUMNS": "200"}).stdout.decode().split())
    group = typer.main.get_command(app)
    params = group.commands[command].params
    with_value_default = 0
    for param in params:
        if getattr(param, "param_type_name", None) != "option":
            continue
        assert param.opts[0] in out, f"{command}: {param.opts[0]} missing from --help"
        assert param.help, f"{command}: {param.opts[0]} has no help text"
        if param.required or (param.is_flag and not param.secondary_opts):
            continue  # plain flags are off unless given; required options have no default
        if param.default is None:
            assert "Default:" in param.help, f"{command}: {param.opts[0]} does not say what happens by default"
        else:
            with_value_default += 1
    # Typer renders each of those defaults as "[default: ...]".
    assert out.count("[default:") == with_value_default
