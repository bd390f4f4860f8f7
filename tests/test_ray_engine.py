"""`label --engine ray` against `--engine local` on the same multi-file input, on a local Ray
instance of this machine's CPUs (2 in CI). Skipped only when the `ray` extra is missing; CI
installs it. Every run here is on the tiny test encoder: the claims are about rows, files, locks
and messages, and each Ray worker loads it in a fraction of the bundled model's time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from conftest import SAMPLES, SIB_LABELS
import tiny_encoder

pytest.importorskip("ray.data", reason="the ray extra is not installed: pip install -e '.[ray]'")
# every test of this file on one pytest worker, sharing one Ray instance (pyproject: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("ray")

# every train, label and eval of this module on the tiny test encoder
cli = tiny_encoder.cli


@pytest.fixture(scope="module", autouse=True)
def ray_instance(rosprompt_home: Path):
    """One local Ray instance for every test here: each `--engine ray` run in this process joins
    it (ray_engine.connect) instead of starting and stopping its own."""
    import ray

    from rosprompt_cli.ray_engine import connect

    started = connect(ray)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The multilingual sample cut into three JSONL files of uneven sizes, with one blank text."""
    rows = [json.loads(line) for line in (SAMPLES / "news_multilingual.jsonl").read_text(encoding="utf-8").splitlines()]
    rows[7]["text"] = "   "
    folder = tmp_path_factory.mktemp("shards")
    for name, part in (("a", rows[:150]), ("b", rows[150:160]), ("c", rows[160:])):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def local_labels(cli, shards: Path, tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    out = tmp_path_factory.mktemp("local") / "labelled"
    cli("label", shards, "--labels", SIB_LABELS, "--out", out, "--engine", "local")
    assert sorted(p.name for p in out.iterdir()) == ["a.parquet", "b.parquet", "c.parquet"]
    return pl.concat([pl.read_parquet(out / f"{name}.parquet") for name in "abc"])


def _same_labels(ray_out: pl.DataFrame, local: pl.DataFrame, expected_ids: list[int]) -> None:
    assert ray_out.height == local.height == len(expected_ids)
    assert ray_out["id"].to_list() == expected_ids  # every row once, in input order
    assert ray_out.columns == local.columns
    joined = local.join(ray_out, on="id", suffix="_ray")
    assert joined.height == len(expected_ids)
    assert joined["label"].to_list() == joined["label_ray"].to_list()  # nulls (the blank text) included
    assert joined["label"].null_count() == 1
    diff = (joined["score"] - joined["score_ray"]).abs().max()
    assert diff is not None and diff < 1e-4


def test_ray_single_file_output_matches_local(cli, shards, local_labels, tmp_path):
    out = tmp_path / "tagged.parquet"
    summary = tmp_path / "summary.json"
    proc = cli("label", str(shards / "*.jsonl"), "--labels", SIB_LABELS, "--out", out, "--engine", "ray",
               "--num-workers", "2", "--cpus-per-worker", "1", "--summary", summary)
    stderr = proc.stderr.decode()
    assert "Traceback" not in stderr
    assert "315 rows from 3 file(s)" in stderr and "on 2 worker(s)" in stderr
    expected_ids = list(range(1, 316))
    _same_labels(pl.read_parquet(out), local_labels, expected_ids)
    report = json.loads(summary.read_text())
    assert (report["engine"], report["status"], report["rows"], report["labelled"], report["empty_text"]) == ("ray", "ok", 315, 314, 1)
    assert not list(tmp_path.glob(".*partial*"))


def test_ray_shard_folder_matches_local_and_refuses_to_overwrite(cli, shards, local_labels, tmp_path):
    out = tmp_path / "tagged"
    cli("label", shards, "--labels", SIB_LABELS, "--out", out, "--engine", "ray", "--chunk-rows", "50")
    parts = sorted(out.glob("*.parquet"))
    assert [p.name for p in parts] == [f"part-{i:06}.parquet" for i in range(len(parts))], "as README names them"
    _same_labels(pl.concat([pl.read_parquet(p) for p in parts]), local_labels, list(range(1, 316)))
    again = cli("label", shards, "--labels", SIB_LABELS, "--out", out, "--engine", "ray", check=False)
    assert again.returncode == 1 and "pass --force" in again.stderr.decode()


def test_ray_names_the_unreadable_row_and_publishes_nothing(cli, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.jsonl").write_text('{"id": 1, "text": "The match ended in a draw."}\n', encoding="utf-8")
    (folder / "bad.jsonl").write_text('{"id": 2, "text": "Voters went to the polls."}\n{"id": 3, "text": "x"\n', encoding="utf-8")
    out = tmp_path / "tagged.parquet"
    proc = cli("label", folder, "--labels", "sports,politics", "--out", out, "--engine", "ray", "--num-workers", "1", check=False)
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert f"{folder / 'bad.jsonl'}, line 2, column" in stderr and "--engine local --on-error skip" in stderr
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_ray_takes_the_output_lock_a_local_run_holds(cli, shards, tmp_path):
    """A local run and a Ray run on one output cannot both write it: the second waits for nothing
    and exits 5, naming the holder (here this test process, holding the local engine's lock)."""
    from rosprompt_cli.output import OutputLock

    out = tmp_path / "tagged.parquet"
    with OutputLock(out):
        proc = cli("label", shards, "--labels", SIB_LABELS, "--engine", "ray", "--out", out, check=False)
    err = " ".join(proc.stderr.decode().split())
    assert proc.returncode == 5 and "another rosprompt run" in err and "Traceback" not in err, err
    assert not out.exists()


def test_ray_refuses_a_fifo_in_one_line(cli, tmp_path):
    fifo = tmp_path / "feed.jsonl"
    os.mkfifo(fifo)
    proc = cli("label", fifo, "--labels", SIB_LABELS, "--engine", "ray", "--out", tmp_path / "o.parquet", check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == f"rosprompt: error: {fifo}: is a pipe or device, not a file; label it with --engine local"


def test_ray_reads_tsv_as_the_local_engine_does(cli, tmp_path):
    """Plain tab-separated values (a quote is text), a wholly quoted field unquoted, empty is null."""
    src = tmp_path / "in.tsv"
    src.write_bytes(b'text\tid\n"Quoted" text\t1\nplain\t2\n"open quote\t3\n"""She said so,"" he wrote."\t4\n\t5\n')
    cli("label", src, "--labels", SIB_LABELS, "--engine", "ray", "--num-workers", "1", "--out", tmp_path / "ray.parquet")
    cli("label", src, "--labels", SIB_LABELS, "--out", tmp_path / "local.parquet")
    on_ray, local = pl.read_parquet(tmp_path / "ray.parquet"), pl.read_parquet(tmp_path / "local.parquet")
    assert on_ray.get_column("text").to_list() == local.get_column("text").to_list() == [
        '"Quoted" text', "plain", '"open quote', '"She said so," he wrote.', None]
    assert on_ray.get_column("label").to_list() == local.get_column("label").to_list()


def test_every_enumerated_option_value_with_ray_ends_in_0_1_or_2(cli, tmp_path):
    """test_option_combinations.py's pairs for --engine ray: each value of each enumerated option.
    A value that the driver accepts and that resolves to a scorer already run (auto = cpu,
    auto = float32) is not run again: a Ray run costs seconds."""
    from test_option_combinations import ENUMERATED, LABELS, _check, _three_rows

    from rosprompt_cli.errors import RosPromptError
    from rosprompt_cli.spec import ScorerSpec

    src = _three_rows(tmp_path)
    ran: set[tuple] = set()
    outcomes = []
    for name, values in ENUMERATED.items():
        for value in values:
            spec = ScorerSpec(**{name.removeprefix("--"): value})
            try:
                resolved = (spec.check_placement(), spec.quantize, spec.dtype.replace("auto", "float32"), spec.verbalizer)
            except RosPromptError:
                resolved = None  # refused: cheap, run it to see the refusal
            if resolved is not None and resolved in ran:
                continue
            proc = cli("label", src, "--labels", LABELS, "--engine", "ray", "--num-workers", "1", name, value,
                       "--out", tmp_path / "out.parquet", "--force", check=False)
            _check(proc, [name, value])
            outcomes.append(proc.returncode)
            if resolved is not None and proc.returncode == 0:
                ran.add(resolved)
    assert outcomes.count(0) >= 3 and outcomes.count(1) >= 3, outcomes
