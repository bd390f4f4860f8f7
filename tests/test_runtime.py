"""ONNX Runtime against torch (issue 17): the same labels and scores, a cache that two processes
can build at once and that is rebuilt when broken, and clear refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import REPO, SAMPLES, SIB_LABELS, SLICE_ROWS

SCORE_TOLERANCE = 1e-4


def _label(cli, tmp_path: Path, name: str, *args: str, src: Path = SAMPLES / "news_multilingual.jsonl",
           ) -> tuple[pl.DataFrame, str]:
    out = tmp_path / f"{name}.parquet"
    proc = cli("label", src, "--labels", SIB_LABELS, "--all-scores", "--out", out, *args)
    return pl.read_parquet(out), proc.stderr.decode()


def _plain_scores(labelled: pl.DataFrame) -> pl.Series:
    """The best label's plain softmax probability from the calibrated --all-scores, q ** T
    normalised, with the shipped prompt's temperature (the runs here use it)."""
    from rosprompt_cli.prompt import SoftPrompt, shipped_prompt_path

    temperature = SoftPrompt.load(shipped_prompt_path()).meta.calibration["temperature"]
    powered = labelled.select(pl.col(f"score_{name}") ** temperature for name in SIB_LABELS.split(","))
    return powered.max_horizontal() / powered.sum_horizontal()


def _assert_same_labels_and_scores(torch_out: pl.DataFrame, onnx_out: pl.DataFrame, rows: int = 315) -> None:
    assert torch_out.height == onnx_out.height == rows
    assert torch_out["label"].to_list() == onnx_out["label"].to_list()
    score_columns = [c for c in torch_out.columns if c.startswith("score")]
    assert score_columns
    for column in score_columns:
        diff = (torch_out[column] - onnx_out[column]).abs().max()
        assert diff < SCORE_TOLERANCE, f"{column}: torch and ONNX Runtime differ by {diff}"


@pytest.mark.parametrize("prompt_args", [[], ["--no-prompt"]], ids=["shipped-prompt", "no-prompt"])
def test_onnx_runtime_gives_torch_labels_and_scores_with_the_bundled_model(cli, tmp_path, prompt_args, sample_slice):
    src = sample_slice / "news_slice.jsonl"  # 63 rows, all 11 languages of the sample
    torch_out, _ = _label(cli, tmp_path, "torch", "--runtime", "torch", *prompt_args, src=src)
    onnx_out, status = _label(cli, tmp_path, "onnx", "--runtime", "onnx", *prompt_args, src=src)
    assert "float32 on ONNX Runtime" in status
    _assert_same_labels_and_scores(torch_out, onnx_out, SLICE_ROWS)
    auto_out, status = _label(cli, tmp_path, "auto", *prompt_args, src=src)  # auto is ONNX Runtime on a CPU
    assert "float32 on ONNX Runtime" in status
    assert auto_out.equals(onnx_out)


def test_onnx_runtime_gives_torch_labels_and_scores_with_a_masked_lm(cli, tiny_mlm_dir, tmp_path):
    prompt = tmp_path / "mlm.safetensors"
    cli("train", SAMPLES / "train_en.csv", "--model", tiny_mlm_dir, "--epochs", "2", "--prompt-len", "4",
        "--out", prompt)
    for name, args in (("plain", ["--model", str(tiny_mlm_dir), "--no-prompt"]), ("prompt", ["--prompt", str(prompt)])):
        torch_out, _ = _label(cli, tmp_path, f"torch-{name}", "--runtime", "torch", *args)
        onnx_out, status = _label(cli, tmp_path, f"onnx-{name}", "--runtime", "onnx", *args)
        assert "on ONNX Runtime" in status
        _assert_same_labels_and_scores(torch_out, onnx_out)


def test_auto_goes_on_on_torch_where_onnx_runtime_cannot_be_used_and_says_why(cli, tiny_mlm_dir, tmp_path):
    # a cache folder that cannot be made (under a file, which stops root too): the export fails
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    env = {"ROSPROMPT_HOME": str(not_a_folder / "home")}
    args = ["label", SAMPLES / "news_multilingual.jsonl", "--labels", SIB_LABELS, "--model", tiny_mlm_dir,
            "--no-prompt", "--all-scores"]
    auto = cli(*args, "--out", tmp_path / "auto.parquet", env=env)
    assert "on torch, ONNX Runtime failed: cannot write the ONNX export" in auto.stderr.decode()
    cli(*args, "--runtime", "torch", "--out", tmp_path / "torch.parquet", env=env)
    assert pl.read_parquet(tmp_path / "auto.parquet").equals(pl.read_parquet(tmp_path / "torch.parquet"))
    int8 = cli(*args, "--quantize", "int8", "--out", tmp_path / "int8.parquet", env=env)  # int8 made by torch
    assert "(int8; on torch, ONNX Runtime failed: cannot write the ONNX export" in int8.stderr.decode()
    assert pl.read_parquet(tmp_path / "int8.parquet").height == 315
    asked = cli(*args, "--runtime", "onnx", "--out", tmp_path / "onnx.parquet", env=env, check=False)
    err = asked.stderr.decode()
    assert asked.returncode == 1 and "cannot write the ONNX export" in err and "Traceback" not in err
    assert not (tmp_path / "onnx.parquet").exists()


def _build_in_subprocess(model_dir: Path, home: Path) -> subprocess.Popen:
    code = (
        "import sys\n"
        "from rosprompt_cli.spec import ScorerSpec, build_scorer\n"
        f"scorer = build_scorer(ScorerSpec(model={str(model_dir)!r}, use_prompt=False, runtime='onnx', verbalizer='embed'))\n"
        "assert scorer.backbone.runtime == 'onnx'\n"
        "print(scorer.text_vectors(['a short text']).shape)\n"
    )
    env = os.environ | {"ROSPROMPT_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_two_processes_starting_at_once_export_one_cache_entry(tiny_mlm_dir, tmp_path):
    home = tmp_path / "home"
    first, second = _build_in_subprocess(tiny_mlm_dir, home), _build_in_subprocess(tiny_mlm_dir, home)
    for proc in (first, second):
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
    entries = [p for p in (home / "onnx").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1  # one float32 entry, complete
    meta = json.loads((entries[0] / "meta.json").read_text())
    assert meta["identity"]["precision"] == "float32" and meta["max_abs_diff"] < 1e-3
    assert not [p for p in (home / "onnx").iterdir() if p.name.startswith(".export-")]


WARM_START = (
    "import sys, torch\n"
    "from rosprompt_cli.spec import ScorerSpec, build_scorer\n"
    "scorer = build_scorer(ScorerSpec(runtime='onnx'))\n"
    "print('transformers.modeling_utils' in sys.modules)\n"  # the base of every transformers model class
    "print(isinstance(scorer.backbone.model, torch.nn.Module))\n"
    "print('onnx' in sys.modules)\n"  # the exporter, needed only to build a cache entry (0.6 s to import)
)


def test_a_warm_start_on_onnx_runtime_never_loads_the_torch_encoder_nor_the_exporter(rosprompt_home):
    env = os.environ | {"ROSPROMPT_HOME": str(rosprompt_home)}
    runs = [subprocess.run([sys.executable, "-c", WARM_START], env=env, cwd=REPO, capture_output=True, check=True)
            for _ in range(2)]  # the first builds the cache entry if no test has yet
    assert runs[1].stdout.decode().splitlines() == ["False", "False", "False"], runs[1].stderr.decode()


def test_the_embedding_table_read_alone_is_the_encoders_own(rosprompt_home):
    import torch

    from rosprompt_cli.backbone import load_backbone

    backbone = load_backbone(None, "cpu")
    table = backbone.embedding_table()
    assert not backbone.model_loaded  # read from the safetensors file, not from a loaded encoder
    own = backbone.model.get_input_embeddings()
    assert table.weight.dtype == torch.float32 and torch.equal(table.weight, own.weight)
    assert backbone.embedding_table() is own  # once loaded, the encoder's own table, not a second copy


@pytest.fixture()
def tiny_mlm_backbone(tiny_mlm_dir, tmp_path, monkeypatch):
    from rosprompt_cli.backbone import load_backbone

    monkeypatch.setenv("ROSPROMPT_HOME", str(tmp_path / "home"))
    return load_backbone(str(tiny_mlm_dir), "cpu")


def _hidden(encoder, backbone) -> list[float]:
    import torch

    enc = backbone.tokenizer(["Il pleut sur la ville.", "A goal in the last minute."], padding=True,
                             return_tensors="pt")
    with torch.no_grad():
        return encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state.flatten().tolist()


@pytest.mark.parametrize("damage", ["flip-bytes", "truncate", "stale-version", "no-meta"])
def test_a_corrupt_or_stale_cached_graph_is_rebuilt_not_used(tiny_mlm_backbone, damage):
    from rosprompt_cli.runtime import cache_entry, onnx_encoder

    torch_model = tiny_mlm_backbone.model
    expected = _hidden(onnx_encoder(tiny_mlm_backbone), tiny_mlm_backbone)
    entry = cache_entry(tiny_mlm_backbone)
    assert entry.meta() is not None
    graph = entry.graph.read_bytes()
    meta_path = entry.folder / "meta.json"
    if damage == "flip-bytes":  # same size, other bytes: only the sha256 can tell
        middle = len(graph) // 2
        entry.graph.write_bytes(graph[:middle] + bytes(b ^ 0xFF for b in graph[middle:middle + 64]) + graph[middle + 64:])
    elif damage == "truncate":
        entry.graph.write_bytes(graph[: len(graph) // 3])
    elif damage == "stale-version":
        meta = json.loads(meta_path.read_text())
        meta["identity"]["onnxruntime"] = "0.0.1"
        meta_path.write_text(json.dumps(meta))
    else:
        meta_path.unlink()
    assert entry.meta() is None
    tiny_mlm_backbone.model = torch_model
    rebuilt = onnx_encoder(tiny_mlm_backbone)
    assert entry.meta() is not None and entry.graph.read_bytes() == graph
    assert _hidden(rebuilt, tiny_mlm_backbone) == pytest.approx(expected, abs=1e-6)


def _op_counts(graph: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(graph), load_external_data=False).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def test_an_xlm_roberta_graph_is_fused_and_torch_keeps_its_own_attention(tiny_mlm_backbone):
    from rosprompt_cli.runtime import cache_entry, onnx_encoder

    attention_before = tiny_mlm_backbone.model.config._attn_implementation
    expected = _hidden(tiny_mlm_backbone.model, tiny_mlm_backbone)
    encoder = onnx_encoder(tiny_mlm_backbone)
    layers = tiny_mlm_backbone.model.config.num_hidden_layers
    entry = cache_entry(tiny_mlm_backbone)
    ops = _op_counts(entry.graph)
    assert ops.get("Attention") == layers and ops.get("SkipLayerNormalization") == 2 * layers
    assert entry.meta()["fused"]["Attention"] == layers
    assert _hidden(encoder, tiny_mlm_backbone) == pytest.approx(expected, abs=1e-5)
    # the export switched torch to eager attention for a moment; torch runs on its own again
    assert tiny_mlm_backbone.model.config._attn_implementation == attention_before


@pytest.mark.parametrize("why", ["no fusions for this model type", "the optimizer fails"])
def test_a_graph_that_cannot_be_fused_is_exported_plain_and_still_exact(tiny_mlm_backbone, monkeypatch, why):
    from onnxruntime.transformers import optimizer

    from rosprompt_cli import runtime

    if why == "no fusions for this model type":
        monkeypatch.setattr(runtime, "FUSED_MODEL_TYPES", {})
    else:
        def broken(*args, **kwargs):
            raise RuntimeError("an optimizer bug")

        monkeypatch.setattr(optimizer, "optimize_model", broken)
    expected = _hidden(tiny_mlm_backbone.model, tiny_mlm_backbone)
    encoder = runtime.onnx_encoder(tiny_mlm_backbone)
    entry = runtime.cache_entry(tiny_mlm_backbone)
    assert "Attention" not in _op_counts(entry.graph) and entry.meta()["fused"] == {}
    assert _hidden(encoder, tiny_mlm_backbone) == pytest.approx(expected, abs=1e-5)
    assert sorted(p.name for p in entry.folder.iterdir()) == ["encoder.onnx", "meta.json"]


def test_runtime_onnx_without_onnxruntime_says_how_to_install_it(cli_process, tiny_mlm_dir, tmp_path):
    blocker = tmp_path / "blocked"
    for name in ("onnxruntime", "onnx"):
        (blocker / name).mkdir(parents=True)
        (blocker / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed here')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}
    args = ["label", SAMPLES / "news_multilingual.jsonl", "--labels", SIB_LABELS, "--model", tiny_mlm_dir,
            "--no-prompt"]
    proc = cli_process(*args, "--runtime", "onnx", "--out", tmp_path / "a.parquet", check=False, env=env)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "pip install onnxruntime onnx" in err and "Traceback" not in err
    assert not (tmp_path / "a.parquet").exists()
    proc = cli_process(*args, "--out", tmp_path / "b.parquet", env=env)  # auto: torch, without a word of ONNX
    assert "ONNX Runtime" not in proc.stderr.decode()
    assert pl.read_parquet(tmp_path / "b.parquet").height == 315


@pytest.mark.parametrize("args, message", [
    (["--runtime", "gpu"], "--runtime"),
    (["--runtime", "onnx", "--dtype", "bfloat16"], "bfloat16"),
    (["--runtime", "onnx", "--dtype", "float16"], "float16"),
    (["--threads", "0"], "--threads"),
])
def test_runtime_choices_that_cannot_work_are_refused_in_one_line(cli, tmp_path, args, message):
    out = tmp_path / "out.parquet"
    proc = cli("label", SAMPLES / "news_multilingual.jsonl", "--labels", SIB_LABELS, "--out", out, *args, check=False)
    err = proc.stderr.decode()
    assert proc.returncode != 0 and message in err and "Traceback" not in err
    assert not out.exists()


def test_int8_runs_on_onnx_runtime_and_mostly_keeps_the_float32_labels(cli, tmp_path):
    float32, _ = _label(cli, tmp_path, "float32")
    int8, status = _label(cli, tmp_path, "int8", "--runtime", "onnx", "--quantize", "int8", "--threads", "1")
    assert "int8 on ONNX Runtime" in status
    agree = sum(a == b for a, b in zip(float32["label"], int8["label"])) / float32.height
    assert agree >= 0.9, agree
    # int8 changes the scores (it did quantise) but little: measured mean change 0.01 on the samples,
    # on the plain softmax (calibration, T about 0.3, spreads every change of the logits threefold)
    plain32, plain8 = _plain_scores(float32), _plain_scores(int8)
    assert 0 < (plain32 - plain8).abs().mean() < 0.03


def test_bfloat16_on_a_cpu_runs_where_the_cpu_has_it_and_is_refused_where_not(cli, tmp_path):
    from rosprompt_cli.backbone import cpu_has_native_bf16

    out = tmp_path / "bf16.parquet"
    proc = cli("label", SAMPLES / "news_multilingual.jsonl", "--labels", SIB_LABELS, "--out", out,
               "--dtype", "bfloat16", "--device", "cpu", check=False)
    err = proc.stderr.decode()
    if not cpu_has_native_bf16():
        assert proc.returncode == 1 and "no native bfloat16" in err and not out.exists()
        return
    assert proc.returncode == 0, err
    assert "bfloat16" in err and "ONNX Runtime" not in err  # bfloat16 runs on torch
    float32, _ = _label(cli, tmp_path, "float32")
    agree = sum(a == b for a, b in zip(float32["label"], pl.read_parquet(out)["label"])) / float32.height
    assert agree >= 0.9, agree


@pytest.mark.parametrize("value, threads", [("3", 3), (" 2 ", 2), ("0", None), ("four", None), ("", None)])
def test_threads_default_to_omp_num_threads_when_it_is_a_positive_number(monkeypatch, value, threads):
    from rosprompt_cli.spec import default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert default_threads() == threads
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() is None


@pytest.mark.parametrize(("machine", "vnni", "reduced"), [("x86_64", True, False), ("x86_64", False, True),
                                                           ("aarch64", False, False)])
def test_int8_weights_take_7_bits_on_an_x86_cpu_without_vnni(tiny_model, tmp_path, monkeypatch, machine, vnni,
                                                             reduced):
    """Where ONNX Runtime's uint8 x int8 kernels can saturate (x86 without VNNI), the int8 graph is
    quantised with 7-bit weights (reduce_range), in a cache entry of its own; elsewhere with 8."""
    import platform

    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    from rosprompt_cli import runtime
    from rosprompt_cli.backbone import load_backbone

    monkeypatch.setattr(platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda: vnni)
    assert runtime.int8_weights_reduced() is reduced
    monkeypatch.setenv("ROSPROMPT_HOME", str(tmp_path / "home"))
    backbone = load_backbone(tiny_model, "cpu")
    runtime.onnx_encoder(backbone, 1, quantize="int8")
    entry = runtime.cache_entry(backbone, "int8")
    bits = 7 if reduced else 8
    assert entry.identity["weight_bits"] == entry.meta()["weight_bits"] == bits
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(entry.graph)).graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and t.name.endswith("_quantized")]
    assert weights, "the graph has int8 weights"
    largest = max(int(np.abs(w.astype(np.int16)).max()) for w in weights)
    # symmetric per channel, each channel's largest weight at the end of the range: [-127, 127], or
    # ONNX Runtime's reduced [-64, 64]
    assert largest == (64 if reduced else 127), largest
