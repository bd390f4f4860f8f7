"""Property: any table of strings and numbers comes back from `label` with every column and row
intact, in CSV, JSONL and Parquet. Runs the same FileRun the CLI runs (pre-pass, chunked
labelling, atomic writer) in-process with the real model, so hypothesis can try many tables."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rosprompt_cli.file_run import FileRun, RunRequest
from rosprompt_cli.frames import LabelOptions
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.verbalizers.embed import EmbeddingScorer

LABELS = LabelSet.from_names(["sports", "politics"])
# Any unicode text that UTF-8 can encode (no lone surrogates).
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
numbers = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
names = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda n: n.strip() and n not in ("text", "label", "score")
)


@st.composite
def tables(draw) -> tuple[list[str], list[list[object]]]:
    """Column names (one of them 'text') and rows; each extra column is all strings or all numbers."""
    extra = draw(st.lists(names, max_size=4, unique=True))
    columns = ["text", *extra]
    kinds = [texts] + [draw(st.sampled_from([texts, numbers])) for _ in extra]
    n_rows = draw(st.integers(min_value=0, max_value=6))
    rows = [[draw(kind) for kind in kinds] for _ in range(n_rows)]
    return columns, rows


@pytest.fixture(scope="module")
def scorer(tiny_backbone) -> EmbeddingScorer:
    """On the tiny test encoder: the claim is about the values a file format keeps."""
    return EmbeddingScorer(tiny_backbone)


def _label(src: Path, out: Path, scorer: EmbeddingScorer) -> None:
    request = RunRequest(input=str(src), out=str(out), force=True, chunk_rows=4)
    with FileRun(request, LabelOptions(batch_size=3), list(LABELS.names)) as run:
        run.prepare()
        run.execute(scorer, LABELS)
    assert run.summary.rejected == 0


SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(table=tables())
def test_csv_round_trip(tmp_path_factory, scorer, table):
    columns, rows = table
    folder = tmp_path_factory.mktemp("csv")
    src, out = folder / "in.csv", folder / "out.csv"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)
    _label(src, out, scorer)
    with open(src, newline="", encoding="utf-8") as fh:
        expected = [row for row in csv.reader(fh) if row]  # csv text is what the user wrote
    with open(out, newline="", encoding="utf-8") as fh:
        got = [row for row in csv.reader(fh) if row]
    assert got[0][: len(columns)] == columns
    assert got[0][len(columns):] == ["label", "score"]
    assert len(got) == len(expected), "every row, no more"
    for want, have in zip(expected[1:], got[1:]):
        assert have[: len(columns)] == want


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(b, (int, float)) and math.isclose(float(a), float(b), rel_tol=0, abs_tol=0)
    return a == b


@SETTINGS
@given(table=tables())
def test_jsonl_round_trip(tmp_path_factory, scorer, table):
    columns, rows = table
    folder = tmp_path_factory.mktemp("jsonl")
    src, out = folder / "in.jsonl", folder / "out.jsonl"
    src.write_text("".join(json.dumps(dict(zip(columns, row))) + "\n" for row in rows), encoding="utf-8")
    _label(src, out, scorer)
    # split on "\n" only: str.splitlines() would also split inside values at U+0085, U+2028, ...
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line]
    assert len(got) == len(rows), "every row, no more"
    for row, have in zip(rows, got):
        assert list(have)[: len(columns)] == columns
        for name, value in zip(columns, row):
            assert _same(value, have[name]), (name, value, have[name])


@SETTINGS
@given(table=tables())
def test_parquet_round_trip(tmp_path_factory, scorer, table):
    columns, rows = table
    folder = tmp_path_factory.mktemp("parquet")
    src, out = folder / "in.parquet", folder / "out.parquet"
    if rows:
        frame = pl.DataFrame({name: list(values) for name, values in zip(columns, zip(*rows))}, strict=False)
    else:
        frame = pl.DataFrame(schema={name: pl.String for name in columns})
    frame.write_parquet(src)
    _label(src, out, scorer)
    back = pl.read_parquet(out)
    assert back.columns[: len(columns)] == columns
    assert back.select(columns).equals(frame), "every value, row and column"
