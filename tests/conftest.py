"""Shared fixtures: one model cache per test session, the CLI in this process (`cli`, one
scorer cache per pytest worker) and in a real process (`cli_process`), and what is expensive to
make (a trained prompt, a tiny masked LM) made once per pytest run and shared by its workers.

Two models, two tiers of claims:
- the tiny test encoder (`tiny_model`; `tiny_cli` and `tiny_cli_process` run every train,
  label and eval on it) for claims about files, bytes, exit codes, messages, resume, locks and
  engines: deterministic labels in well under a millisecond a text;
- the bundled model (`cli`, `cli_process`, `backbone`) where the claim is about the model:
  accuracy, the shipped prompt, ONNX-vs-torch parity, int8 and bfloat16 agreement, calibration,
  what --adapt does to the scores, README's examples as written, and one smoke test per command."""

from __future__ import annotations

import fcntl
import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
SIB = REPO.parent / "shared" / "data" / "sib200"
SIB_LABELS = "science/technology,travel,politics,sports,health,entertainment,geography"
# SIB-200 sits beside the repository in CI (../shared), not in a user's clone.
requires_sib = pytest.mark.skipif(
    not SIB.is_dir(), reason=f"needs SIB-200 at {SIB} (../shared beside the repository, as in CI; not shipped)"
)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`-n`, on by default in pyproject.toml), split the cores between the
    workers: each worker's model runs, in process and in the CLI processes it starts, take their
    share through OMP_NUM_THREADS (the CLI's --threads default), as a user splitting a machine
    between runs would. Workers that each took every core would slow one another down severalfold."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, _cores() // workers))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker more than there are cores (pyproject.toml caps it at 4). Most tests
    run on the tiny test encoder now, and spend much of their time starting processes, waiting
    for a lock or a signal, or in Ray's start-up: on 2 cores three workers ran the suite in 445 s
    where two took 496 s (bench/results/test_durations.md), where the model-bound suite before
    them had run slower with three."""
    return _cores() + 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked slow first (the order is otherwise kept), so that no worker starts a
    several-minute test when the others are done."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _run_folder(factory: pytest.TempPathFactory) -> Path:
    """A folder of this pytest run that all its xdist workers share (each worker's own base
    folder sits inside it), or the base folder of a run without workers."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return factory.getbasetemp().parent
    return factory.getbasetemp()


def made_once(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """`name` in the run's shared folder, made by `make(path)` by the first worker that asks for
    it while the others wait on a file lock, then used by all."""
    folder = _run_folder(factory) / "made-once"
    folder.mkdir(exist_ok=True)
    target = folder / name
    with open(folder / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            partial = folder / f".{name}.partial"
            make(partial)
            partial.rename(target)
    return target


@pytest.fixture(scope="session")
def rosprompt_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache shared by the whole session (the bundled model is converted once), and by the
    in-process library tests too; one for all xdist workers (the cache is safe for processes
    that start at once)."""
    if os.environ.get("ROSPROMPT_TEST_HOME"):
        home = Path(os.environ["ROSPROMPT_TEST_HOME"])
    else:
        home = _run_folder(tmp_path_factory) / "rosprompt-home"
        home.mkdir(exist_ok=True)
    os.environ["ROSPROMPT_HOME"] = str(home)
    return home


class CLI:
    """`rosprompt ARGS` in a real process, as a user's shell runs it: for what only a process
    shows (signals, kill -9, pipes, locks between processes, FIFOs, resource limits, the
    installed command) and one smoke test per command."""

    def __init__(self, home: Path, model: str | None = None) -> None:
        self.env = os.environ | {"ROSPROMPT_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        self.model = model

    def argv(self, args: tuple) -> list[str]:
        """The command line of `rosprompt ARGS`: with this runner's `--model` after a train,
        label or eval command that names none (`tiny_cli`: every such run on the tiny encoder)."""
        argv = [str(a) for a in args]
        if self.model is not None and argv and argv[0] in COMMANDS and "--model" not in argv:
            argv += ["--model", self.model]
        return argv

    def command(self, *args: object) -> list[str]:
        """`rosprompt ARGS` as a process's argv, for tests that start the process themselves."""
        return [sys.executable, "-m", "rosprompt_cli", *self.argv(args)]

    def __call__(self, *args: object, input: bytes | None = None, cwd: Path | None = None, check: bool = True,
                 env: dict | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            self.command(*args),
            input=input,
            capture_output=True,
            cwd=cwd or REPO,
            env=self.env | (env or {}),
            timeout=900,
        )
        return _checked(proc, args, check)


COMMANDS = ("train", "label", "eval")
# an option a message recommends, with the command it names when it names one ("eval --calibrate")
_ADVISED = re.compile(r"(?:\b(train|label|eval)\b[^;,.()]*?)?(?<![\w-])(--[a-z][a-z0-9-]*)")


def command_options() -> dict[str, set[str]]:
    """Every option of each command, as the Typer app declares it."""
    import typer.main

    from rosprompt_cli.commands import app

    group = typer.main.get_command(app)
    options = {}
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        options[name] = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    return options


def advice_that_does_not_exist(command: str, stderr: str) -> list[str]:
    """The options that `command`'s messages name but no command that they name has: advice a
    user cannot follow. An option after another command's name ("eval --calibrate") is checked
    against that command."""
    if command not in COMMANDS:
        return []
    options = _OPTIONS or _OPTIONS.update(command_options()) or _OPTIONS
    messages: list[str] = []
    for line in stderr.splitlines():  # a long message may be wrapped over lines
        if line.startswith("rosprompt"):
            messages.append(line)
        elif messages and line.strip():
            messages[-1] += " " + line.strip()
    wrong = []
    for line in messages:
        for named, option in _ADVISED.findall(line):
            if option not in options[named or command] | {"--help", "--debug", "--version"}:
                wrong.append(f"{named or command} {option}: {line}")
    return wrong


_OPTIONS: dict[str, set[str]] = {}


def _checked(proc: subprocess.CompletedProcess, args: tuple, check: bool) -> subprocess.CompletedProcess:
    # every message of every CLI run in the suite: the options it recommends exist (issue 31)
    stderr = proc.stderr.decode(errors="replace") if isinstance(proc.stderr, bytes) else (proc.stderr or "")
    wrong = advice_that_does_not_exist(str(args[0]) if args else "", stderr)
    assert not wrong, f"advice naming an option the command does not have: {wrong}"
    if check and proc.returncode != 0:
        raise AssertionError(
            f"rosprompt {' '.join(map(str, args))} exited {proc.returncode}\n"
            f"stderr:\n{proc.stderr.decode(errors='replace')}"
        )
    return proc


class InProcessCLI(CLI):
    """`rosprompt ARGS` run in this process through `commands.run`, the function the installed
    command calls: the same parsing, messages, exit codes and files, with stdin, stdout, stderr,
    argv, the environment and the working folder set as a process would have them, and the
    scorer taken from one cache per pytest worker (the model loads once, not once per command).
    Signal handlers are not installed: tests of signals use `cli_process`."""

    def __init__(self, home: Path, scorers: object, model: str | None = None) -> None:
        super().__init__(home, model)
        self.scorers = scorers

    def __call__(self, *args: object, input: bytes | None = None, cwd: Path | None = None, check: bool = True,
                 env: dict | None = None) -> subprocess.CompletedProcess:
        from rosprompt_cli.commands import run

        argv = self.argv(args)
        streams = {name: io.BytesIO() for name in ("stdout", "stderr")}
        stdin = io.TextIOWrapper(io.BytesIO(input or b""), encoding="utf-8")
        stdout, stderr = (io.TextIOWrapper(streams[name], encoding="utf-8", write_through=True)
                          for name in ("stdout", "stderr"))
        wanted = {"ROSPROMPT_HOME": self.env["ROSPROMPT_HOME"], **(env or {})}
        saved_env = {key: os.environ.get(key) for key in wanted}
        saved = sys.stdin, sys.stdout, sys.stderr, sys.argv, os.getcwd()
        try:
            os.environ.update(wanted)
            sys.stdin, sys.stdout, sys.stderr, sys.argv = stdin, stdout, stderr, ["rosprompt", *argv]
            os.chdir(cwd or REPO)
            code = run(argv, self.scorers)
        finally:
            sys.stdin, sys.stdout, sys.stderr, sys.argv = saved[:4]
            os.chdir(saved[4])
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        proc = subprocess.CompletedProcess(["rosprompt", *argv], int(code), streams["stdout"].getvalue(),
                                           streams["stderr"].getvalue())
        return _checked(proc, args, check)


@pytest.fixture(scope="session")
def scorer_cache(rosprompt_home: Path):
    """One scorer cache for every in-process command and library test of this worker. Eight:
    the suite's tests move between about that many specs (the shipped prompt, none, torch, int8,
    the tiny masked LM, ...), and a scorer evicted is a model loaded again."""
    from rosprompt_cli.spec import ScorerCache

    return ScorerCache(size=8)


@pytest.fixture(scope="session")
def cli(rosprompt_home: Path, scorer_cache) -> InProcessCLI:
    return InProcessCLI(rosprompt_home, scorer_cache)


@pytest.fixture(scope="session")
def cli_process(rosprompt_home: Path) -> CLI:
    return CLI(rosprompt_home)


@pytest.fixture(scope="session")
def tiny_cli(rosprompt_home: Path, scorer_cache, tiny_model: str) -> InProcessCLI:
    """`cli` with every train, label and eval run on the tiny test encoder (`--model`), for
    claims about files, bytes, exit codes, messages and resume."""
    return InProcessCLI(rosprompt_home, scorer_cache, tiny_model)


@pytest.fixture(scope="session")
def tiny_cli_process(rosprompt_home: Path, tiny_model: str) -> CLI:
    """`cli_process` on the tiny test encoder."""
    return CLI(rosprompt_home, tiny_model)


@pytest.fixture(scope="session")
def trained_prompt(cli: InProcessCLI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prompt trained through the CLI on the English sample (few epochs: a test, not a
    benchmark), once per pytest run."""
    def train(out: Path) -> None:
        out.mkdir()
        cli("train", SAMPLES / "train_en.csv", "--dev", SAMPLES / "dev_en.csv", "--epochs", "4", "--lr", "0.02",
            "--prompt-len", "8", "--out", out / "news.safetensors")

    return made_once(tmp_path_factory, "trained-prompt", train) / "news.safetensors"


@pytest.fixture(scope="session")
def sample_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Parts of the multilingual sample in this folder, for tests whose claim does not need all
    315 rows (two ways of running the same thing compared: torch and ONNX Runtime, the library and
    the CLI, with and without --adapt; an output's shape; a message) at a fraction of the whole
    sample's model work:
    - news_slice.csv and news_slice.jsonl: every fifth row, 63 rows with all 11 of its languages
      and all 7 of its categories;
    - news_three_languages.csv: every row in Swahili, Russian and Chinese (84 rows; 28 a language,
      enough for --adapt-by lang to centre each language on its own)."""
    folder = tmp_path_factory.mktemp("sample-slice")
    csv_lines = (SAMPLES / "news_multilingual.csv").read_text(encoding="utf-8").splitlines(True)
    (folder / "news_slice.csv").write_text(csv_lines[0] + "".join(csv_lines[1::5]), encoding="utf-8")
    three = [line for line in csv_lines[1:] if line.split(",")[1] in ("swh_Latn", "rus_Cyrl", "zho_Hans")]
    (folder / "news_three_languages.csv").write_text(csv_lines[0] + "".join(three), encoding="utf-8")
    jsonl_lines = (SAMPLES / "news_multilingual.jsonl").read_text(encoding="utf-8").splitlines(True)
    (folder / "news_slice.jsonl").write_text("".join(jsonl_lines[::5]), encoding="utf-8")
    return folder


SLICE_ROWS = 63


@pytest.fixture(scope="session")
def backbone(rosprompt_home: Path):
    from rosprompt_cli.backbone import load_backbone

    return load_backbone(None, "cpu")


TINY_ENCODER_SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def make_tiny_encoder(out: Path) -> None:
    """The bundled model's architecture (BertModel, XLM-R vocabulary, 512 positions) at 2 layers
    and hidden size 32, with weights drawn from a fixed seed, and the bundled model's real
    tokenizer, saved as a Hugging Face folder: what `--model DIR` takes. No masked-LM head, so it
    runs the embedding verbalizer, as the bundled model does."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    from rosprompt_cli.bundled import bundled_model_dir

    source = bundled_model_dir()
    config = BertConfig.from_pretrained(source)
    for key, value in TINY_ENCODER_SIZES.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(source / name, out / name)


@pytest.fixture(scope="session")
def tiny_model(rosprompt_home: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny test encoder's folder (make_tiny_encoder), made once per pytest run and shared by
    its workers, for `--model` in process and in real processes: the model for claims about
    files, bytes, exit codes, messages and resume, which need labels that are deterministic, not
    good. It scores a text in well under a millisecond; its ONNX export is cached once per run,
    as the bundled model's is."""
    return str(made_once(tmp_path_factory, "tiny-encoder", make_tiny_encoder))


@pytest.fixture(scope="session")
def tiny_backbone(tiny_model: str):
    """The tiny test encoder loaded on the CPU, for library tests of code that runs any backbone
    the same way (batching, training loops, prompt files)."""
    from rosprompt_cli.backbone import load_backbone

    return load_backbone(tiny_model, "cpu")


@pytest.fixture(scope="session")
def tiny_trained_prompt(tiny_cli: InProcessCLI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prompt of 8 vectors trained through the CLI on the tiny test encoder (the English
    sample, 2 epochs), once per pytest run."""
    def train(out: Path) -> None:
        out.mkdir()
        tiny_cli("train", SAMPLES / "train_en.csv", "--dev", SAMPLES / "dev_en.csv", "--epochs", "2", "--lr", "0.02",
                 "--prompt-len", "8", "--out", out / "tiny.safetensors")

    return made_once(tmp_path_factory, "tiny-trained-prompt", train) / "tiny.safetensors"


@pytest.fixture(scope="session")
def tiny_mlm_dir(rosprompt_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small XLMRobertaForMaskedLM (2 layers, hidden 32, random weights, fixed seed) with the
    bundled model's real tokenizer, saved with save_pretrained: a masked LM as a hub user would
    pass it to --model, without hub access. Made once per pytest run."""
    def make(out: Path) -> None:
        import shutil

        import torch
        from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

        from rosprompt_cli.backbone import load_tokenizer
        from rosprompt_cli.bundled import bundled_model_dir

        source = bundled_model_dir()
        tokenizer = load_tokenizer(str(source), True)
        torch.manual_seed(0)
        config = XLMRobertaConfig(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=514, pad_token_id=tokenizer.pad_token_id, bos_token_id=0,
            eos_token_id=2,
        )
        XLMRobertaForMaskedLM(config).save_pretrained(out)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(source / name, out / name)

    return made_once(tmp_path_factory, "tiny-xlmr-mlm", make)
