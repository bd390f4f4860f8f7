"""Shared fixtures: one model cache per test session, a CLI runner, a trained prompt."""

from __future__ import annotations

import os
import subprocess
import sys
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


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`-n`, on by default in pyproject.toml), split the cores between the
    workers: each worker's model runs, in process and in the CLI processes it starts, take their
    share through OMP_NUM_THREADS (the CLI's --threads default), as a user splitting a machine
    between runs would. Workers that each took every core would slow one another down severalfold."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        os.environ["OMP_NUM_THREADS"] = str(max(1, cores // workers))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked slow first (the order is otherwise kept), so that no worker starts a
    several-minute test when the others are done."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def rosprompt_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache shared by the whole session (the bundled model is converted once), and by the
    in-process library tests too; one for all xdist workers (the cache is safe for processes
    that start at once)."""
    if os.environ.get("ROSPROMPT_TEST_HOME"):
        home = Path(os.environ["ROSPROMPT_TEST_HOME"])
    elif os.environ.get("PYTEST_XDIST_WORKER"):
        home = tmp_path_factory.getbasetemp().parent / "rosprompt-home"
        home.mkdir(exist_ok=True)
    else:
        home = tmp_path_factory.mktemp("rosprompt-home")
    os.environ["ROSPROMPT_HOME"] = str(home)
    return home


class CLI:
    def __init__(self, home: Path) -> None:
        self.env = os.environ | {"ROSPROMPT_HOME": str(home), "PYTHONUNBUFFERED": "1"}

    def __call__(self, *args: str, input: bytes | None = None, cwd: Path | None = None, check: bool = True,
                 env: dict | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "rosprompt_cli", *map(str, args)],
            input=input,
            capture_output=True,
            cwd=cwd or REPO,
            env=self.env | (env or {}),
            timeout=900,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"rosprompt {' '.join(map(str, args))} exited {proc.returncode}\n"
                f"stderr:\n{proc.stderr.decode(errors='replace')}"
            )
        return proc


@pytest.fixture(scope="session")
def cli(rosprompt_home: Path) -> CLI:
    return CLI(rosprompt_home)


@pytest.fixture(scope="session")
def trained_prompt(cli: CLI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prompt trained through the CLI on the English sample (few epochs: a test, not a benchmark)."""
    out = tmp_path_factory.mktemp("prompts") / "news.safetensors"
    cli("train", SAMPLES / "train_en.csv", "--dev", SAMPLES / "dev_en.csv", "--epochs", "4", "--lr", "0.02",
        "--prompt-len", "8", "--out", out)
    return out


@pytest.fixture(scope="session")
def backbone(rosprompt_home: Path):
    from rosprompt_cli.backbone import load_backbone

    return load_backbone(None, "cpu")


@pytest.fixture(scope="session")
def tiny_mlm_dir(rosprompt_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small XLMRobertaForMaskedLM (2 layers, hidden 32, random weights, fixed seed) with the
    bundled model's real tokenizer, saved with save_pretrained: a masked LM as a hub user would
    pass it to --model, without hub access."""
    import shutil

    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    from rosprompt_cli.backbone import load_tokenizer
    from rosprompt_cli.bundled import bundled_model_dir

    source = bundled_model_dir()
    tokenizer = load_tokenizer(str(source), True)
    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=514, pad_token_id=tokenizer.pad_token_id, bos_token_id=0, eos_token_id=2,
    )
    out = tmp_path_factory.mktemp("tiny-xlmr-mlm")
    XLMRobertaForMaskedLM(config).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(source / name, out / name)
    return out
