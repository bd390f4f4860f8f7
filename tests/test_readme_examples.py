"""Every ```bash block of README.md, run in a fresh copy of the clone as a user would paste the
lines after the Quickstart, each line through the installed `rosprompt` in a real process. Each
block runs on its own (after the block whose file it uses, if any: example_groups), so that the
blocks run in parallel.
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


WRITES = re.compile(r"(?:--out|--out-prompt|--output|--report|--summary|>) (\S+)")  # what a line leaves behind


def bash_blocks(readme: str) -> list[tuple[str, list[str]]]:
    """(the heading above it, its command lines) of each ```bash block, in order, continuation
    lines joined."""
    blocks = []
    heading = ""
    for title, block in re.findall(r"^#+ +(.*?)$|^ *```bash\n(.*?)^ *```", readme, flags=re.S | re.M):
        if title:
            heading = title
            continue
        lines = [line.strip() for line in block.replace("\\\n", " ").splitlines()]
        blocks.append((heading, [line for line in lines if line and not line.startswith("#")]))
    return blocks


def bash_lines(readme: str) -> list[str]:
    return [line for _, block in bash_blocks(readme) for line in block]


def example_groups(readme: str) -> dict[str, list[str]]:
    """The ```bash blocks joined into groups that each run on their own from a fresh clone, by
    the heading of their first block: a block that uses a file an earlier block writes (eval on
    the prompt that train wrote) runs in the earlier block's group, after it. Every other block is
    a group of its own, so that a user can paste any one section, and the groups can run in
    parallel."""
    blocks = bash_blocks(readme)
    group_of = list(range(len(blocks)))
    for later, (_, block) in enumerate(blocks):
        for earlier in range(later):
            written = {path for line in blocks[earlier][1] for path in WRITES.findall(line)}
            if any(path in line.split() for line in block for path in written):
                group_of[later] = group_of[earlier]
    groups: dict[str, list[str]] = {}
    for index, (_, block) in enumerate(blocks):
        name = re.sub(r"[^a-z0-9]+", "-", blocks[group_of[index]][0].lower()).strip("-")
        groups.setdefault(name, []).extend(block)
    return groups


README_GROUPS = example_groups((REPO / "README.md").read_text(encoding="utf-8"))


def test_readme_bash_lines_are_found():
    lines = bash_lines((REPO / "README.md").read_text(encoding="utf-8"))
    assert lines[0].startswith("python3 -m venv") and any(line.startswith("rosprompt train") for line in lines)
    assert not any("ray start" in line or "hf:" in line for line in lines), "templates belong in ```sh blocks"
    assert len(lines) >= 10 and len(README_GROUPS) >= 6
    assert sorted(line for group in README_GROUPS.values() for line in group) == sorted(lines), "each line in one group"
    train = next(group for group in README_GROUPS.values() if any(line.startswith("rosprompt train") for line in group))
    assert any("--prompt prompts/news.safetensors" in line for line in train), "eval runs after the train it needs"


@pytest.mark.slow
@pytest.mark.parametrize("lines", README_GROUPS.values(), ids=README_GROUPS.keys())
def test_readme_examples_run_as_written(cli_process, tmp_path, lines):
    clone = tmp_path / "rosprompt"  # what a user has after the Quickstart: the clone, installed
    clone.mkdir()
    for folder in ("samples", "prompts"):
        shutil.copytree(REPO / folder, clone / folder)
    if SHARED.is_dir():
        (tmp_path / "shared").symlink_to(SHARED)
    env = cli_process.env | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = []
    for line in lines:
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
        for out in WRITES.findall(line):
            assert (clone / out).exists(), (line, out)
        ran.append(line)
    assert ran, "a group of lines that ran none of them"
