"""Bad inputs for `rosprompt label`, as data: shared by tests/test_cli_reliability.py and by
bench/bad_inputs.py, which prints the table of messages and exit codes for the docs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class BadInput:
    name: str  # what is wrong, in words
    filename: str
    content: bytes
    args: list[str] = field(default_factory=list)
    exit_code: int = 0
    message: list[str] = field(default_factory=list)  # fragments expected on stderr
    rows_out: int | None = None  # rows in the published output; None: nothing published
    rejected: int = 0  # rows in the rejects file
    records: int = 0  # data records in the input (rows_out + rejected must equal it)


def _jsonl(*rows: object) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def _parquet(columns: dict) -> bytes:
    import io

    import polars as pl

    buffer = io.BytesIO()
    pl.DataFrame(columns).write_parquet(buffer)
    return buffer.getvalue()


GOOD_A = {"id": 1, "text": "The home side won the cup final after extra time"}
GOOD_B = {"id": 3, "text": "El parlamento aprobó el presupuesto nacional"}
LONG_TEXT = "Doctors warn that the new virus spreads quickly in crowded hospitals. " * 30_000  # ~2 MB

CASES = [
    BadInput(
        "JSONL line that is not valid JSON (skip)", "in.jsonl",
        _jsonl(GOOD_A, b'{"id": 2, "text": "unterminated', GOOD_B),
        exit_code=4, message=["in.jsonl, line 2, column 19: invalid JSON", "1 rows set aside"],
        rows_out=2, rejected=1, records=3,
    ),
    BadInput(
        "JSONL line that is not valid JSON (--on-error fail)", "in.jsonl",
        _jsonl(GOOD_A, b'{"id": 2, "text": "unterminated', GOOD_B), ["--on-error", "fail"],
        exit_code=1, message=["in.jsonl, line 2, column 19: invalid JSON", "--on-error skip"], records=3,
    ),
    BadInput(
        "JSONL line that is JSON but not an object", "in.jsonl", _jsonl(GOOD_A, [1, 2], GOOD_B),
        exit_code=4, message=["not a JSON object"], rows_out=2, rejected=1, records=3,
    ),
    BadInput(
        "JSONL field that is an object on one line and a string on another", "in.jsonl",
        _jsonl({"id": 1, "meta": {"a": 1}, "text": "vote"}, {"id": 2, "meta": "x", "text": "match"}),
        exit_code=4, message=["line 2: field 'meta' is a scalar here but an object"], rows_out=1, rejected=1, records=2,
    ),
    BadInput(
        "CSV row with too many fields (skip)", "in.csv",
        b"id,text\n1,The striker scored twice\n2,Prices rose, again\n3,Elections next week\n",
        exit_code=4, message=["in.csv, line 3: 3 fields where the header has 2"], rows_out=2, rejected=1, records=3,
    ),
    BadInput(
        "CSV row with too few fields (--on-error fail)", "in.csv",
        b"id,text,source\n1,The striker scored twice,wire\n2,no source\n", ["--on-error", "fail"],
        exit_code=1, message=["in.csv, line 3: 2 fields where the header has 3"], records=2,
    ),
    BadInput(
        "CSV header naming a column twice", "in.csv", b"id,text,id\n1,hello,2\n",
        exit_code=1, message=["in.csv, line 1: column 'id' appears twice"], records=1,
    ),
    BadInput(
        "missing text column", "in.csv", b"id,body\n1,hello\n",
        exit_code=1, message=["no column 'text' (the file has: id, body)", "--text-col"], records=1,
    ),
    BadInput(
        "null, empty, blank and missing text", "in.jsonl",
        _jsonl({"id": 1, "text": None}, {"id": 2, "text": ""}, {"id": 3, "text": "   "}, {"id": 4}, GOOD_A),
        exit_code=0, message=["4 rows have empty or missing text (lines 1, 2, 3, 4)", "kept in the output"],
        rows_out=5, records=5,
    ),
    BadInput(
        "CSV bytes that are not UTF-8 (Latin-1 é)", "in.csv",
        b"id,text\n1,The striker scored twice\n2,caf\xe9 prices rise\n",
        exit_code=4, message=["in.csv, line 3, column 'text': byte 0xE9 is not UTF-8"], rows_out=1, rejected=1,
        records=2,
    ),
    BadInput(
        "JSONL bytes that are not UTF-8 (--on-error fail)", "in.jsonl",
        _jsonl(GOOD_A, b'{"id": 2, "text": "caf\xe9"}'), ["--on-error", "fail"],
        exit_code=1, message=["in.jsonl, line 2, column 23: byte 0xE9 is not UTF-8"], records=2,
    ),
    BadInput(
        "UTF-8 byte-order mark (CSV)", "in.csv", b"\xef\xbb\xbfid,text\n1,The striker scored twice\n",
        exit_code=0, rows_out=1, records=1,
    ),
    BadInput(
        "UTF-8 byte-order mark (JSONL)", "in.jsonl", b"\xef\xbb\xbf" + _jsonl(GOOD_A, GOOD_B),
        exit_code=0, rows_out=2, records=2,
    ),
    BadInput(
        "extremely long text (2 MB in one row)", "in.jsonl", _jsonl(GOOD_A, {"id": 2, "text": LONG_TEXT}),
        exit_code=0, rows_out=2, records=2,
    ),
    BadInput(
        "empty input file (0 bytes)", "in.csv", b"",
        exit_code=0, message=["the input is empty"], rows_out=0, records=0,
    ),
    BadInput(
        "CSV with a header and no rows", "in.csv", b"id,text\n",
        exit_code=0, rows_out=0, records=0,
    ),
    BadInput(
        "a .parquet file that is not Parquet", "in.parquet", b"id,text\n1,hello\n",
        exit_code=1, message=["in.parquet: not a Parquet file", "--format"], records=1,
    ),
    BadInput(
        "duplicate label names", "in.csv", b"id,text\n1,hello\n", ["--labels", "sports,politics,sports"],
        exit_code=1, message=["label 'sports' is given twice"], records=1,
    ),
    BadInput(
        "empty label name", "in.csv", b"id,text\n1,hello\n", ["--labels", "sports,,politics"],
        exit_code=1, message=["empty label name"], records=1,
    ),
    BadInput(
        "corrupt prompt file", "in.csv", b"id,text\n1,hello\n", ["--prompt", "{tmp}/broken.safetensors"],
        exit_code=1, message=["broken.safetensors: unreadable or corrupt prompt file"], records=1,
    ),
    BadInput(
        "output folder that does not exist", "in.csv", b"id,text\n1,hello\n", ["--out", "{tmp}/no/such/dir/out.csv"],
        exit_code=1, message=["output folder", "does not exist"], records=1,
    ),
    BadInput(
        "nested values asked to go to CSV (found before the model loads)", "in.jsonl",
        _jsonl({"id": 1, "tags": ["a", "b"], "text": "vote"}), ["--out", "{tmp}/out.csv"],
        exit_code=1, message=["column 'tags' holds nested values", ".jsonl or .parquet"], records=1,
    ),
    BadInput(
        "CSV quote never closed (the rest of the file would be one field)", "in.csv",
        b'text,id\nhello world,1\n"unbalanced start,2\nsecond row,3\nthird row,4\n',
        exit_code=1, message=["in.csv, line 3: a quote opened on this line is never closed", "the 2 lines after it",
                              "--unclosed-quote reject-line"], records=4,
    ),
    BadInput(
        "CSV quote never closed (--unclosed-quote reject-line)", "in.csv",
        b'text,id\nhello world,1\n"unbalanced start,2\nsecond row,3\nthird row,4\n', ["--unclosed-quote", "reject-line"],
        exit_code=4, message=["in.csv, line 3: a quote opened on this line is never closed", "read as rows"],
        rows_out=3, rejected=1, records=4,
    ),
    BadInput(
        "CSV field with text after its closing quote", "in.csv", b'text,id\n"Quoted" text,1\nplain,2\n',
        exit_code=4, message=["in.csv, line 2: a quote is not where CSV allows one"], rows_out=1, rejected=1, records=2,
    ),
    BadInput(
        "TSV with quotes inside text (plain tab-separated values)", "in.tsv",
        b'text\tid\n"Quoted" text\t1\nplain\t2\n"open quote\t3\nfour\t4\nfive\t5\n',
        exit_code=0, rows_out=5, records=5,
    ),
    BadInput(
        "JSONL lines that are {} only", "in.jsonl", b"{}\n{}\n",
        exit_code=1, message=["in.jsonl: no column 'text'"], records=2,
    ),
    BadInput(
        "JSONL text that is a list", "in.jsonl", _jsonl({"text": ["a", "b"]}, GOOD_B),
        exit_code=4, message=["in.jsonl, line 1, column 'text': the text is a list"], rows_out=1, rejected=1, records=2,
    ),
    BadInput(
        "JSONL text that is a list in every row", "in.jsonl", _jsonl({"text": ["a", "b"]}, {"text": ["c"]}),
        exit_code=4, message=["2 rows set aside (2 text not a string)"], rows_out=0, rejected=2, records=2,
    ),
    BadInput(
        "JSONL NaN and -Infinity (Python's json reads them, JSON does not)", "in.jsonl",
        _jsonl(b'{"text": "a", "x": NaN}', GOOD_B, b'{"text": "c", "x": -Infinity}'),
        exit_code=4, message=["in.jsonl, line 1, column 20: invalid JSON (NaN is not a JSON value"],
        rows_out=1, rejected=2, records=3,
    ),
    BadInput(
        "JSONL object naming a key twice (readers disagree on which value wins)", "in.jsonl",
        _jsonl(b'{"text": "vote", "text": "match"}', GOOD_B),
        exit_code=4, message=["in.jsonl, line 1, column 'text': key 'text' appears twice"], rows_out=1, rejected=1,
        records=2,
    ),
    BadInput(
        "Parquet text column holding lists", "in.parquet", _parquet({"text": [["a", "b"], ["c"]]}),
        exit_code=1, message=["in.parquet: column 'text' holds List(String) values, not text"], records=2,
    ),
    BadInput(
        "Parquet text column stored as bytes, one row not UTF-8", "in.parquet",
        _parquet({"id": [1, 2, 3], "text": [b"vote", b"\xff\xfe match", "m\u00e9dico".encode()]}),
        exit_code=4, message=["in.parquet, row 2, column 'text': byte 0xFF of the text (stored as bytes) is not UTF-8"],
        rows_out=2, rejected=1, records=3,
    ),
    BadInput(
        "Parquet column of raw bytes asked to go to JSONL", "in.parquet",
        _parquet({"text": ["vote", "match"], "blob": [b"\x00\x01", b"\x02"]}),
        exit_code=1, message=["in.parquet: column 'blob' holds raw bytes that jsonl output cannot hold"], records=2,
    ),
    BadInput(
        "JSONL text with an unpaired surrogate escape (\\ud800)", "in.jsonl",
        _jsonl(GOOD_A, b'{"id": 2, "text": "broken \\ud800 text"}', GOOD_B),
        exit_code=4, message=["in.jsonl, line 2, column 27: \\ud800 is half of a UTF-16 pair"], rows_out=2,
        rejected=1, records=3,
    ),
    BadInput(
        "JSONL field other than the text with an unpaired low surrogate (\\udc00)", "in.jsonl",
        _jsonl(b'{"id": 1, "note": "x \\udc00", "text": "vote"}', GOOD_B),
        exit_code=4, message=["in.jsonl, line 1, column 22: \\udc00 is half of a UTF-16 pair"], rows_out=1,
        rejected=1, records=2,
    ),
    BadInput(
        "JSONL column of integers and decimals (1, 2.5, 3: read as decimals, the same numbers)", "in.jsonl",
        _jsonl({"n": 1, "text": "vote"}, {"n": 2.5, "text": "match"}, {"n": 3, "text": "clinic"}),
        exit_code=0, rows_out=3, records=3,
    ),
    BadInput(
        "JSONL integer past 2**53 in a column that also holds decimals", "in.jsonl",
        _jsonl({"id": 12345678901234567, "text": "vote"}, {"id": 2.5, "text": "match"}),
        exit_code=1, message=["in.jsonl, line 1, column 'id': the integer 12345678901234567 would lose digits"],
        records=2,
    ),
    BadInput(
        "CSV separated by semicolons (a spreadsheet export)", "in.csv",
        b'id;text\n1;"The home side won the final"\n2;El parlamento aprob\xc3\xb3 el presupuesto\n',
        exit_code=0, message=["in.csv: fields separated by ';'"], rows_out=2, records=2,
    ),
    BadInput(
        "CSV separated by pipes", "in.csv", b"id|text\n1|The home side won the final\n",
        exit_code=1, message=["in.csv: the header 'id|text' is one column: its fields look separated by '|'"],
        records=1,
    ),
    BadInput(
        "--adapt on rows that are all the same text", "in.jsonl", _jsonl(GOOD_A, GOOD_A, GOOD_A), ["--adapt"],
        exit_code=0, message=["--adapt left 1 group(s) as they were", "fewer than 20 distinct texts"], rows_out=3,
        records=3,
    ),
    BadInput(
        "--quantize int8 with --dtype bfloat16", "in.jsonl", _jsonl(GOOD_A), ["--quantize", "int8", "--dtype", "bfloat16"],
        exit_code=1, message=["--quantize int8 runs int8 weights in float32 layers; it cannot be combined"], records=1,
    ),
    BadInput(
        "--labels naming one label twice, once with a space", "in.jsonl", _jsonl(GOOD_A), ["--labels", "sports,sports "],
        exit_code=1, message=["label 'sports' is given twice"], records=1,
    ),
    BadInput(
        "--out where no file can be created (/proc)", "in.csv", b"id,text\n1,hello\n", ["--out", "/proc/out.csv"],
        exit_code=1, message=["/proc/out.csv: ", "/proc", "choose another --out"], records=1,
    ),
]
