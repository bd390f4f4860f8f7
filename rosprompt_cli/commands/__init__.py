"""The `rosprompt` command line: a thin Typer layer over the library (one module per command)."""

from __future__ import annotations

import functools
import os
import sys
from typing import Annotated, Any

import typer
import typer.main

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


@functools.cache
def _click_command() -> Any:
    """The app as a click command, built once per process (typer builds it anew on every call,
    40 ms that a program running many command lines, or the test suite, would pay each time)."""
    return typer.main.get_command(app)


def run(argv: list[str], scorers: object = None) -> int:
    """Run one `rosprompt` command line in this process and return its exit code; user errors
    become one line on stderr, never a traceback. `scorers`: a scorer factory (spec.ScorerCache)
    that label and eval take their scorer from (commands.common.scorer_source), so that several
    command lines in one process load the model once; None builds one per command."""
    debug = "--debug" in argv
    try:
        _click_command()(args=argv, prog_name="rosprompt", obj=scorers)
    except SystemExit as exc:  # click ends every command this way, with the exit code
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except (StdoutClosed, BrokenPipeError):
        return ExitCode.STDOUT_CLOSED
    except RosPromptError as exc:
        if debug:
            raise
        sys.stderr.write(f"rosprompt: error: {exc}\n")
        return exc.exit_code
    except Interrupted as exc:
        sys.stderr.write(f"rosprompt: {exc.message}\n")
        return exc.exit_code
    except Exception as exc:
        if debug:
            raise
        return _internal_error(exc)
    except BaseException as exc:  # a Rust panic inside polars (pyo3's PanicException) is a BaseException
        if debug or type(exc).__name__ != "PanicException":
            raise
        return _internal_error(exc)
    return 0


def main() -> None:
    """Console entry point: the command line of this process, with SIGINT/SIGTERM as
    interruptions and a closed stdout ending the run quietly."""
    install_handlers()
    code = run(sys.argv[1:])
    if code == ExitCode.STDOUT_CLOSED:
        # quietly, as Unix tools do; point stdout at /dev/null so the exit flush cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(code)


def _internal_error(exc: BaseException) -> int:
    """A bug of ours (or of a library): one line, exit code 3."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    sys.stderr.write(
        f"rosprompt: internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback "
        "and please report it)\n"
    )
    return ExitCode.INTERNAL
