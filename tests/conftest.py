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


@pytest.fixture(scope="session")
def rosprompt_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache shared by the whole session (the bundled model is converted once), and by the
    in-process library tests too."""
    home = Path(os.environ.get("ROSPROMPT_TEST_HOME") or tmp_path_factory.mktemp("rosprompt-home"))
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
