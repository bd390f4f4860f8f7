"""A folder or glob INPUT with the local engine: one output per file, bad rows set aside per
file, --resume keeping finished outputs; and the one-line refusals of engine options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import REPO, SAMPLES
import tiny_encoder

LABELS = "sports,politics,health"

# every train, label and eval of this module on the tiny test encoder
cli = tiny_encoder.cli


@pytest.fixture
def csv_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    lines = (SAMPLES / "news_multilingual.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    (folder / "one.csv").write_text(header + "".join(body[:20]), encoding="utf-8")
    (folder / "two.csv").write_text(header + "".join(body[20:30]) + "7,eng_Latn,sports\n" + "".join(body[30:35]), encoding="utf-8")
    (folder / "notes.md").write_text("not a table\n", encoding="utf-8")  # ignored: not a table file
    return folder


def test_folder_input_writes_one_output_per_file_and_sets_bad_rows_aside(cli, csv_folder, tmp_path):
    out = tmp_path / "tagged"
    summary = tmp_path / "summary.json"
    proc = cli("label", csv_folder, "--labels", LABELS, "--out", out, "--summary", summary, check=False)
    stderr = proc.stderr.decode()
    assert proc.returncode == 4, stderr  # published, one row set aside
    assert "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == ["one.parquet", "two.parquet", "two.rejects.jsonl"]
    assert pl.read_parquet(out / "one.parquet").height == 20
    two = pl.read_parquet(out / "two.parquet")
    assert two.height == 15 and two.columns == ["id", "lang", "category", "text", "label", "score"]
    reject = json.loads((out / "two.rejects.jsonl").read_text().splitlines()[0])
    assert reject["line"] == 12
    report = json.loads(summary.read_text())
    assert (report["status"], report["rows"], report["rejected"], len(report["files"])) == ("partial", 35, 1, 2)


def test_resume_keeps_finished_outputs_and_existing_ones_need_force(cli, csv_folder, tmp_path):
    out = tmp_path / "tagged"
    out.mkdir()
    # one.csv labelled on its own into the folder, as a run interrupted after its first file leaves it
    cli("label", str(csv_folder / "one.csv"), "--labels", LABELS, "--out", out / "one.parquet")
    before = (out / "one.parquet").stat().st_mtime_ns
    refused = cli("label", csv_folder, "--labels", LABELS, "--out", out, check=False)
    assert refused.returncode == 1 and "one.parquet: output file exists" in refused.stderr.decode()
    assert sorted(p.name for p in out.iterdir()) == ["one.parquet"], "refused before labelling anything"
    summary = tmp_path / "summary.json"
    proc = cli("label", csv_folder, "--labels", LABELS, "--out", out, "--resume", "--summary", summary, check=False)
    assert proc.returncode == 4 and "1 of 2 outputs are complete already" in proc.stderr.decode()
    assert (out / "one.parquet").stat().st_mtime_ns == before
    assert pl.read_parquet(out / "two.parquet").height == 15
    report = json.loads(summary.read_text())
    assert report["skipped_complete"] == [str(out / "one.parquet")]  # the outputs --resume kept as complete
    assert {Path(one["output"]).name: one["status"] for one in report["files"]} == {"one.parquet": "complete",
                                                                                  "two.parquet": "partial"}


def test_glob_input_and_name_clashes(cli, tmp_path):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "day.jsonl").write_text('{"text": "The election is on Sunday."}\n', encoding="utf-8")
    proc = cli("label", str(tmp_path / "*" / "day.jsonl"), "--labels", LABELS, "--out", tmp_path / "o", check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "both would be written to" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    cli("label", str(tmp_path / "x" / "*.jsonl"), "--labels", LABELS, "--out", tmp_path / "o", "--out-format", "csv")
    assert (tmp_path / "o" / "day.csv").read_text().splitlines()[0] == "text,label,score"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "{tmp}/o.parquet"], "give --out a folder name (no extension) or use --engine ray"),
        (["--out", "{tmp}/o", "--rejects", "{tmp}/r.jsonl"], "--rejects names one file"),
        (["--out", "{tmp}/o", "--num-workers", "2"], "--num-workers is an option of --engine ray"),
        (["--out", "{tmp}/o", "--engine", "spark"], "--engine 'spark': expected one of local, ray"),
        (["--out", "{tmp}/o", "--engine", "ray", "--resume"], "--resume is for --engine local"),
        (["--out", "{tmp}/o", "--engine", "ray", "--on-error", "skip"], "--engine local --on-error skip"),
        (["--out", "{tmp}/o.csv", "--engine", "ray"], "--engine ray writes Parquet"),
        (["--out", "-", "--engine", "ray"], "not stdout"),
        (["--out", "{tmp}/o", "--engine", "ray", "--device", "cuda"], "needs --gpus-per-worker"),
    ],
)
def test_refusals_are_one_line(cli, csv_folder, tmp_path, args, message):
    proc = cli("label", csv_folder, "--labels", LABELS, *[a.format(tmp=tmp_path) for a in args], check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert message in " ".join(err.split()) and "Traceback" not in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.parquet").exists()


def test_engine_ray_without_the_extra_says_how_to_install(rosprompt_home, csv_folder, tmp_path):
    # A real run of the CLI in a process where `import ray` fails, as it does without the extra.
    code = "import sys; sys.modules['ray'] = None; sys.argv[0] = 'rosprompt'; from rosprompt_cli.commands import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "label", str(csv_folder), "--labels", LABELS, "--out", str(tmp_path / "o"), "--engine", "ray"],
        capture_output=True, cwd=REPO, timeout=300,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 1 and "pip install 'rosprompt[ray]'" in err and "Traceback" not in err


def test_resume_refuses_an_output_it_cannot_vouch_for(cli, csv_folder, tmp_path):
    """An output that no run of this rosprompt recorded (copied in, or changed since) is not
    kept as complete: --resume refuses it in one line rather than keep or overwrite it."""
    out = tmp_path / "tagged"
    out.mkdir()
    (out / "one.parquet").write_bytes(b"PAR1 not what a run wrote PAR1")
    proc = cli("label", csv_folder, "--labels", LABELS, "--out", out, "--resume", check=False)
    err = " ".join(proc.stderr.decode().split())
    assert proc.returncode == 1 and "one.parquet: output file exists, and no record says which run made it" in err
    assert (out / "one.parquet").read_bytes() == b"PAR1 not what a run wrote PAR1"
