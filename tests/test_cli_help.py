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


def test_the_scorer_options_are_declared_once_for_the_three_commands():
    """--model, --device, --dtype … --word-pieces are declared once (commands.common.ScorerOptions,
    its defaults ScorerSpec's) and put in each command's signature: the same help and default in
    label and eval, and the part train takes (it trains in float32 on torch) in train."""
    import dataclasses
    from pathlib import Path

    from rosprompt_cli.commands import common
    from rosprompt_cli.spec import ScorerSpec

    flags = {"model": "--model", "device": "--device", "dtype": "--dtype", "quantize": "--quantize",
             "runtime": "--runtime", "threads": "--threads", "verbalizer": "--verbalizer",
             "mlm_template": "--mlm-template", "neighbours": "--neighbours", "aggregate": "--aggregate",
             "word_pieces": "--word-pieces"}
    assert [f.name for f in dataclasses.fields(common.ScorerOptions)] == list(flags)
    source = "".join(p.read_text(encoding="utf-8") for p in Path(common.__file__).parent.glob("*.py"))
    for flag in flags.values():
        assert source.count(f'"{flag}"') == 1, flag
    commands = typer.main.get_command(app).commands
    spec_defaults = {f.name: f.default for f in dataclasses.fields(ScorerSpec)}
    expected = {"label": list(flags), "eval": list(flags), "train": list(common.TRAINING_SCORER_OPTIONS)}
    seen: dict[str, tuple] = {}
    for command, names in expected.items():
        params = {p.name: p for p in commands[command].params}
        for name, flag in flags.items():
            assert (name in params) == (name in names), (command, flag)
            if name in params:
                param = params[name]
                assert param.opts[0] == flag
                if name in spec_defaults:
                    assert param.default == spec_defaults[name], (command, flag)
                assert seen.setdefault(flag, (param.help, param.default)) == (param.help, param.default), (command, flag)
    assert "scorer_options" not in {p.name for c in commands.values() for p in c.params}


def test_help_and_refused_runs_never_import_torch(tmp_path):
    """--help, a usage error and a value refused before any model is needed (with its failed
    --summary written) cost no torch or transformers import: about 0.5 s in place of 2 s."""
    import json
    import subprocess
    import sys

    (tmp_path / "in.csv").write_text("text\nhello\n")
    summary = tmp_path / "run.json"
    lines = [["--help"], ["label", "--help"], ["eval", "--help"], ["train", "--help"],
             ["label", "in.csv", "--bogus"],
             ["label", "in.csv", "--labels", "a,b", "--top-k", "0", "--out", "out.csv", "--summary", str(summary)],
             ["eval", "in.csv", "--calibrate"],
             ["train", "in.csv", "--out", "p.safetensors", "--epochs", "0"],
             ["label", "in.csv", "--labels", "a,b", "--runtime", "tpu"]]
    script = (
        "import contextlib, io, json, sys\n"
        "from rosprompt_cli.commands import run\n"
        "codes = []\n"
        f"for argv in {lines!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "        codes.append(run(argv))\n"
        "print(json.dumps([codes, [m for m in ('torch', 'transformers') if m in sys.modules]]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    codes, heavy = json.loads(proc.stdout)
    assert codes == [0, 0, 0, 0, 2, 1, 1, 1, 1]
    assert heavy == []
    written = json.loads(summary.read_text())
    assert written["status"] == "failed" and written["error"] == "--top-k must be at least 1"
    assert written["versions"]["torch"] == __import__("torch").__version__
