"""Every ```bash block of README.md, run in order in a fresh folder as a user would paste the
lines after the Quickstart, each line through the installed `rosprompt` in a real process.
```sh blocks are templates and are not run: they need what a test cannot have (a Ray cluster,
the model hub, a model or dataset of your own), or they repeat a ```bash example on other data
(training on SIB-200's English split, which test_cli_train_eval runs in a few epochs)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SHARED = REPO.parent / "shared"
INSTALL = re.compile(r"^python3 -m venv .* && pip install [^&]* && ")  # the Quickstart's install step


def bash_lines(readme: str) -> list[str]:
    """The command lines of the ```bash blocks, in order, continuation lines joined."""
    lines: list[str] = []
    for block in re.findall(r"^ *```bash\n(.*?)^ *```", readme, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_readme_bash_lines_are_found():
    lines = bash_lines((REPO / "README.md").read_text(encoding="utf-8"))
    assert lines[0].startswith("python3 -m venv") and any(line.startswith("rosprompt train") for line in lines)
    assert not any("ray start" in line or "hf:" in line for line in lines), "templates belong in ```sh blocks"


@pytest.mark.slow
def test_readme_examples_run_as_written(cli_process, tmp_path):
    clone = tmp_path / "rosprompt"  # what a user has after the Quickstart: the clone, installed
    clone.mkdir()
    for folder in ("samples", "prompts"):
        shutil.copytree(REPO / folder, clone / folder)
    if SHARED.is_dir():
        (tmp_path / "shared").symlink_to(SHARED)
    env = cli_process.env | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = []
    for line in bash_lines((REPO / "README.md").read_text(encoding="utf-8")):
        if "python -m pytest" in line:
            continue  # the test command, which is running this
        line = INSTALL.sub("", line)  # installed already: run what follows the install
        if "../shared" in line and not SHARED.is_dir():
            continue  # a fresh clone without SIB-200 beside it (CI has it)
        proc = subprocess.run(["bash", "-c", f"set -o pipefail; {line}"], cwd=clone, env=env, capture_output=True,
                              timeout=900)
        err = proc.stderr.decode(errors="replace")
        assert proc.returncode == 0, f"{line}\n{err}"
        assert "Traceback" not in err, line
        for out in re.findall(r"(?:--out|--output|>) (\S+)", line):
            assert (clone / out).exists(), (line, out)
        ran.append(line)
    assert len(ran) >= 10
