"""The suite's own machinery: tests marked with one xdist_group run on one pytest worker, as the
Ray tests (one Ray instance) and the training cases that share name embeddings rely on. With
pytest 9.2 and pytest-xdist 3.8, --dist loadgroup silently grouped nothing (pytest-xdist issue
1386); pyproject.toml pins a pytest it works with, and this test says so if that changes."""

from __future__ import annotations

import subprocess
import sys


def test_an_xdist_group_runs_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(
        "import os\n"
        "import pytest\n"
        "GROUP = pytest.mark.xdist_group('together')\n"
        "@pytest.mark.parametrize('n', [pytest.param(n, marks=GROUP) if n % 2 else n for n in range(12)])\n"
        "def test_where(n, tmp_path_factory):\n"
        "    (tmp_path_factory.getbasetemp().parent.parent / f'ran-{n}').write_text(os.environ['PYTEST_XDIST_WORKER'])\n",
        encoding="utf-8",
    )
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist",
                           "loadgroup", "--basetemp", str(tmp_path / "base"), "test_grouped.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    workers = {n: (tmp_path / f"ran-{n}").read_text() for n in range(12)}
    assert len({workers[n] for n in range(1, 12, 2)}) == 1, workers  # the six of the group on one worker


def test_the_tiny_test_encoder_labels_deterministically(tiny_cli, tiny_cli_process, tiny_model, tmp_path):
    """The tiny test encoder every file, byte and exit-code test runs on: the bundled model's
    architecture and tokenizer, small, and the same input gives the same bytes twice in this
    process and once more in a real process (where its ONNX export is read from the cache)."""
    import json
    from pathlib import Path

    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("bert", 2, 32)
    assert (Path(tiny_model) / "tokenizer.json").is_file()
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": f"Headline number {i} about the match"}) + "\n"
                           for i in range(50)), encoding="utf-8")
    runs = [tiny_cli, tiny_cli, tiny_cli_process]
    for number, cli in enumerate(runs):
        proc = cli("label", src, "--labels", "sports,politics,health", "--all-scores", "--out",
                   tmp_path / f"out{number}.jsonl")
        assert f"{Path(tiny_model).resolve()} (float32 on ONNX Runtime)" in proc.stderr.decode()
    first = (tmp_path / "out0.jsonl").read_bytes()
    assert all((tmp_path / f"out{n}.jsonl").read_bytes() == first for n in range(1, len(runs)))
    labels = {json.loads(line)["label"] for line in first.decode().splitlines()}
    assert labels <= {"sports", "politics", "health"}
