"""Length bucketing, prefetching and precision options never change which label a row gets or
the order of the output rows (no timing here: speed is measured by bench/throughput.py)."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import polars as pl
import pytest
import torch

from rosprompt_cli.batching import Batching, EncodedTexts, encode_texts
from rosprompt_cli.file_run import FileRun, RunRequest
from rosprompt_cli.frames import LabelOptions
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.prefetch import prefetched
from rosprompt_cli.verbalizers.embed import EmbeddingScorer

from conftest import SAMPLES, SIB_LABELS

# ---------------------------------------------------------------- batches


def test_batches_cover_every_row_once_shortest_first_trimmed_to_their_longest():
    lengths = np.array([5, 2, 9, 2, 7, 3, 1])
    ids = np.zeros((7, 9), dtype=np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = np.arange(1, n + 1) + 100 * row  # token values say which row they came from
    encoded = EncodedTexts(ids, lengths, pad_id=0)
    seen, widths = [], []
    for positions, input_ids, mask in encoded.batches(3):
        widths.append(input_ids.shape[1])
        assert input_ids.shape[1] == int(lengths[positions.numpy()].max())
        for row, p in enumerate(positions.tolist()):
            assert mask[row].sum().item() == lengths[p]
            assert input_ids[row, : lengths[p]].tolist() == ids[p, : lengths[p]].tolist()
            assert (input_ids[row, lengths[p] :] == 0).all()
        seen += positions.tolist()
    assert sorted(seen) == list(range(7))
    assert [lengths[p] for p in seen] == sorted(lengths.tolist())
    assert widths == [2, 7, 9]  # lengths sorted: [1 2 2] [3 5 7] [9]


def test_encode_texts_right_pads_and_truncates(tiny_backbone):
    texts = ["kurz", "a much longer sentence about rivers, mountains, lakes and the sea " * 5, "mittel lang hier"]
    encoded = encode_texts(tiny_backbone.tokenizer, texts, max_tokens=12)
    assert encoded.input_ids.shape == (3, 12)
    assert encoded.lengths[1] == 12 and encoded.lengths[0] < encoded.lengths[2] < 12
    for row, n in enumerate(encoded.lengths):
        alone = tiny_backbone.tokenizer(texts[row], truncation=True, max_length=12)["input_ids"]
        assert encoded.input_ids[row, :n].tolist() == alone
        assert (encoded.input_ids[row, n:] == tiny_backbone.tokenizer.pad_token_id).all()
    assert len(encode_texts(tiny_backbone.tokenizer, [], 12)) == 0


def test_max_length_truncates_the_text_never_the_prompt(tiny_backbone, tiny_trained_prompt):
    from rosprompt_cli.errors import RosPromptError
    from rosprompt_cli.prompt import SoftPrompt

    prompt = SoftPrompt.load(tiny_trained_prompt)  # 8 prompt vectors
    scorer = EmbeddingScorer(tiny_backbone, prompt, max_length=20)
    encoded = scorer.encode(["word " * 200])
    assert encoded.lengths.max() == 20 - 8  # the prompt keeps its 8 positions inside the limit
    with pytest.raises(RosPromptError, match="--max-length 10: leaves 2 tokens"):
        EmbeddingScorer(tiny_backbone, prompt, max_length=10).encode(["text"])


# ---------------------------------------------------------------- prefetch


def test_prefetched_keeps_order_and_reraises_the_producers_error():
    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("bad row 2")

    got = []
    with pytest.raises(ValueError, match="bad row 2"):
        for item in prefetched(failing()):
            got.append(item)
    assert got == [1]


def test_closing_the_consumer_stops_the_producer():
    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    before = threading.active_count()
    stream = prefetched(endless(), depth=2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    time.sleep(0.3)
    count = len(produced)
    time.sleep(0.3)
    assert len(produced) == count <= 3 + 2 + 1  # bounded read-ahead, and nothing after closing
    assert threading.active_count() == before


# ---------------------------------------------------------------- labels and row order


def _varied_frame(rows: int = 60) -> pl.DataFrame:
    sample = pl.read_ndjson(SAMPLES / "news_multilingual.jsonl")
    texts = sample["text"].to_list()
    rng = random.Random(3)
    made = []
    for i in range(rows):  # 1 to 5 sentences: very different lengths in one chunk
        made.append(" ".join(rng.choice(texts) for _ in range(rng.choice([1, 1, 2, 5]))))
    made[7] = "   "  # a blank row keeps its place with an empty label
    return pl.DataFrame({"id": list(range(rows)), "text": made})


def _label_file(scorer, path, tmp_path, batch_size, chunk_rows, name) -> pl.DataFrame:
    out = tmp_path / f"{name}.parquet"
    options = LabelOptions(batch_size=batch_size, top_k=2, all_scores=True)
    labels = SIB_LABELS.split(",")
    with FileRun(RunRequest(input=str(path), out=str(out), chunk_rows=chunk_rows), options, labels) as run:
        run.prepare()
        run.execute(scorer, LabelSet.from_names(labels))
    return pl.read_parquet(out)


def test_batch_size_chunking_and_input_order_never_change_a_rows_label(tiny_backbone, tiny_trained_prompt, tmp_path):
    """On the tiny test encoder, which is the bundled architecture: padding, masks and buckets are
    the same code and the same arithmetic whatever the size of the network."""
    from rosprompt_cli.prompt import SoftPrompt

    scorer = EmbeddingScorer(tiny_backbone, SoftPrompt.load(tiny_trained_prompt))
    frame = _varied_frame()
    path = tmp_path / "in.jsonl"
    frame.write_ndjson(path)
    # Batch size 1 has no padding at all: the reference every bucketed run must reproduce.
    reference = _label_file(scorer, path, tmp_path, batch_size=1, chunk_rows=4096, name="ref")
    assert reference["id"].to_list() == frame["id"].to_list()
    assert reference["label"][7] is None and reference.height == frame.height
    for batch_size, chunk_rows in [(3, 4096), (8, 17), (64, 5), (None, 2048)]:
        got = _label_file(scorer, path, tmp_path, batch_size, chunk_rows, f"b{batch_size}_c{chunk_rows}")
        assert got["id"].to_list() == frame["id"].to_list(), "output rows must keep input order"
        assert got["text"].to_list() == frame["text"].to_list()
        assert got["label"].to_list() == reference["label"].to_list(), (batch_size, chunk_rows)
        assert got["label_2"].to_list() == reference["label_2"].to_list()
        score_cols = [c for c in got.columns if c.startswith("score")]
        diff = (got.select(score_cols) - reference.select(score_cols)).fill_null(0.0)
        assert diff.select(pl.all().abs().max()).max_horizontal().item() < 1e-4

    # The same rows in another order: each row gets its label back, in the new order.
    shuffled_path = tmp_path / "shuffled.jsonl"
    frame.sample(fraction=1.0, shuffle=True, seed=11).write_ndjson(shuffled_path)
    shuffled = _label_file(scorer, shuffled_path, tmp_path, batch_size=8, chunk_rows=13, name="shuffled")
    expected = dict(zip(reference["id"].to_list(), reference["label"].to_list()))
    assert shuffled["id"].to_list() == pl.read_ndjson(shuffled_path)["id"].to_list()
    assert [expected[i] for i in shuffled["id"].to_list()] == shuffled["label"].to_list()


@pytest.mark.parametrize(("runtime", "status"), [([], "(int8 on ONNX Runtime)"), (["--runtime", "torch"], "(int8)")],
                         ids=["auto", "torch"])
def test_quantize_int8_labels_through_the_cli(cli, tmp_path, runtime, status):
    out32, out8 = tmp_path / "fp32.csv", tmp_path / "int8.csv"
    sample = SAMPLES / "news_multilingual.csv"
    cli("label", sample, "--labels", SIB_LABELS, "--out", out32)
    done = cli("label", sample, "--labels", SIB_LABELS, "--out", out8, "--quantize", "int8", *runtime)
    assert status in done.stderr.decode()
    fp32, int8 = pl.read_csv(out32), pl.read_csv(out8)
    assert int8["id"].to_list() == fp32["id"].to_list()
    agree = (int8["label"] == fp32["label"]).mean()
    assert agree >= 0.85, f"int8 gives the float32 label to only {agree:.0%} of rows"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dtype", "float16", "--device", "cpu"], "--dtype float16 is for CUDA devices; on CPU use --quantize int8"),
        (["--quantize", "int4"], "--quantize 'int4': expected one of none, int8"),
        (["--dtype", "fp8"], "--dtype 'fp8': expected auto, float32, float16, bfloat16"),
    ],
)
def test_precision_options_reject_what_cannot_run(cli, tmp_path, args, message):
    proc = cli("label", SAMPLES / "dev_en.csv", "--labels", "sports,politics", "--out", tmp_path / "o.csv",
               *args, check=False)
    assert proc.returncode == 1
    assert message in proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_half_precision_labels_like_float32(backbone, tmp_path):
    from rosprompt_cli.backbone import load_backbone

    texts = _varied_frame(30)["text"].to_list()
    labels = LabelSet.from_names(SIB_LABELS.split(","))
    cpu = EmbeddingScorer(backbone)
    gpu = EmbeddingScorer(load_backbone(None, "cuda"))
    from rosprompt_cli.evaluation import predict

    agree = np.mean([a == b for a, b in zip(predict(cpu, texts, labels), predict(gpu, texts, labels))])
    assert agree >= 0.9


def test_batches_bounded_by_tokens_and_the_gpu_slices_are_the_same_batches():
    rng = np.random.default_rng(5)
    lengths = np.concatenate([rng.integers(1, 300, size=190), rng.integers(600, 1500, size=10)])
    rng.shuffle(lengths)
    ids = np.zeros((200, 1500), dtype=np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(5, 1000, size=n)
    encoded = EncodedTexts(ids, lengths, pad_id=0)
    batching = Batching(rows=32, tokens=1024)
    batches = list(encoded.batches(batching))
    assert sorted(p for positions, _, _ in batches for p in positions.tolist()) == list(range(200))
    for positions, input_ids, mask in batches:
        rows, width = input_ids.shape
        assert rows <= 32 and (rows * width <= 1024 or rows == 1), (rows, width)
        assert mask.sum(1).tolist() == lengths[positions.numpy()].tolist()
    # each of the ten texts past half the budget goes alone; a batch never stops short of its
    # bounds while the next text fits
    alone = [input_ids.shape[1] for _, input_ids, _ in batches if input_ids.shape[0] == 1]
    assert sorted(width for width in alone if width > 1024 // 2) == sorted(lengths[lengths > 512].tolist())
    for (_, ids_a, _), (_, ids_b, _) in zip(batches, batches[1:]):
        grown = (ids_a.shape[0] + 1) * max(ids_a.shape[1], ids_b.shape[1])
        assert ids_a.shape[0] == 32 or grown > 1024
    sliced = list(encoded.sliced_batches(batching, torch.device("cpu")))
    assert len(sliced) == len(batches)
    for (pa, ia, ma), (pb, ib, mb) in zip(batches, sliced):
        assert torch.equal(pa, pb) and torch.equal(ia, ib) and torch.equal(ma, mb)


def test_encode_texts_gives_the_ids_of_the_tokenizers_own_call(tiny_backbone):
    texts = ["", "Ok.", "Il pleut.  Beaucoup!", "科学家发现了一种新的治疗方法。", "a " * 600, "<mask> and </s> inside"]
    encoded = encode_texts(tiny_backbone.tokenizer, texts, max_tokens=40)
    own = tiny_backbone.tokenizer(texts, truncation=True, max_length=40, padding=True, return_tensors="np")
    assert np.array_equal(encoded.input_ids, own["input_ids"])
    assert encoded.lengths.tolist() == own["attention_mask"].sum(1).tolist()
