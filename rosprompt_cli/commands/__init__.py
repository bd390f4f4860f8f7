"""The `rosprompt` command line: a thin Typer layer over the library (one module per command)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from rosprompt_cli.errors import ExitCode, RosPromptError
from rosprompt_cli.interrupt import Interrupted, install_handlers
from rosprompt_cli.output import StdoutClosed
from rosprompt_cli.version import __version__

app = typer.Typer(
    name="rosprompt",
    help="Label text in any language with any label set, using RoSPrompt soft prompts on small multilingual models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rosprompt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass  # --debug is read by main() before Typer parses the command line


def _register() -> None:
    from rosprompt_cli.commands import eval_cmd, label_cmd, train_cmd

    app.command("train", help=train_cmd.HELP)(train_cmd.train)
    app.command("label", help=label_cmd.HELP)(label_cmd.label)
    app.command("eval", help=eval_cmd.HELP)(eval_cmd.evaluate)


_register()


def main() -> None:
    """Console entry point: user errors become one line on stderr, never a traceback."""
    debug = "--debug" in sys.argv[1:]
    install_handlers()
    try:
        app()
    except (StdoutClosed, BrokenPipeError):
        # quietly, as Unix tools do; point stdout at /dev/null so the exit flush cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(ExitCode.STDOUT_CLOSED)
    except RosPromptError as exc:
        if debug:
            raise
        sys.stderr.write(f"rosprompt: error: {exc}\n")
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        sys.stderr.write(f"rosprompt: {exc.message}\n")
        sys.exit(exc.exit_code)
    except Exception as exc:
        if debug:
            raise
        _internal_error(exc)
    except BaseException as exc:  # a Rust panic inside polars (pyo3's PanicException) is a BaseException
        if debug or type(exc).__name__ != "PanicException":
            raise
        _internal_error(exc)


def _internal_error(exc: BaseException) -> None:
    """A bug of ours (or of a library): one line, exit code 3."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    sys.stderr.write(
        f"rosprompt: internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback "
        "and please report it)\n"
    )
    sys.exit(ExitCode.INTERNAL)
