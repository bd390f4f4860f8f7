"""Loading the frozen encoder: the bundled default, a Hugging Face id, or a local directory."""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rosprompt_cli.bundled import BUNDLED_ALIASES, IDENTITY_FILE, bundled_model_dir
from rosprompt_cli.errors import RosPromptError, check_choice
from rosprompt_cli.paths import cache_home

DEFAULT_MODEL = "bundled"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass
class Backbone:
    """A frozen encoder with its tokenizer and the identity a prompt file records.

    The torch encoder (`model`) is loaded on first use: a run on a cached ONNX graph needs only
    the config, the tokenizer and the embedding table (`embedding_table`), and importing the
    model code of transformers alone takes about 2 s of a start.
    """

    name: str
    source: str  # as given to --model
    content_hash: str
    config: Any  # the transformers config
    tokenizer: object
    device: torch.device
    # Text put before every input ("query: " for the e5 family, which was trained with it).
    text_prefix: str
    precision: str = "float32"  # float32, float16, bfloat16 or int8 (dynamic, linear layers)
    # The masked-LM head (hidden state -> vocabulary logits) of a masked LM; None for encoders
    # without one (sentence encoders such as the bundled e5).
    mlm_head: MaskedLmHead | None = None
    runtime: str = "torch"  # where `model` runs: torch, or onnx (runtime.OnnxEncoder)
    runtime_note: str = ""  # why --runtime auto stayed on torch on a CPU, for status lines
    load_encoder: Callable[[], torch.nn.Module] | None = field(default=None, repr=False)
    folder: Path | None = field(default=None, repr=False)  # the local model folder, if any
    _model: torch.nn.Module | None = field(default=None, repr=False)
    # Label-name embeddings already computed on this backbone (verbalizers/embed.py), by the whole
    # list of names and its phrasing: a run, or a training, with the same names again skips them.
    name_vector_memo: OrderedDict = field(default_factory=OrderedDict, repr=False)

    @property
    def model(self) -> torch.nn.Module:
        """The encoder, loaded now if it was not yet."""
        if self._model is None:
            if self.load_encoder is None:
                raise RuntimeError("Backbone has neither an encoder nor a way to load one")
            self._model = self.load_encoder()
        return self._model

    @model.setter
    def model(self, value: torch.nn.Module) -> None:
        self._model = value

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    @property
    def execution(self) -> str:
        """Precision and runtime, for status lines: "float32", "float32 on ONNX Runtime"."""
        note = f"; {self.runtime_note}" if self.runtime_note else ""
        return self.precision + (" on ONNX Runtime" if self.runtime == "onnx" else "") + note

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    @property
    def max_length(self) -> int:
        limit = getattr(self.config, "max_position_embeddings", 512)
        tok_limit = getattr(self.tokenizer, "model_max_length", limit) or limit
        return int(min(limit, tok_limit if tok_limit < 1_000_000 else limit))

    @property
    def word_embeddings(self) -> torch.nn.Embedding:
        return self.model.get_input_embeddings()

    def embedding_table(self) -> torch.nn.Embedding:
        """The input embeddings, read alone from the folder's safetensors file when the encoder
        is not loaded and runs in float32 on a CPU (all a cached ONNX graph needs of it); else the
        encoder's own."""
        readable = self.folder is not None and getattr(self.config, "model_type", None) in _PLAIN_EMBEDDING_TYPES
        if self._model is None and readable and self.device.type == "cpu" and self.precision == "float32":
            table = _read_word_embeddings(self.folder, int(getattr(self.config, "vocab_size", -1)))
            if table is not None:
                return table
        return self.word_embeddings


# The input embedding matrix of BERT-like encoders, under the model's prefix when it has one,
# and the model types whose input embedding is that matrix as it is (no scaling in the lookup).
_WORD_EMBEDDINGS_KEY = "embeddings.word_embeddings.weight"
_PLAIN_EMBEDDING_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert", "electra")


def _read_word_embeddings(folder: Path, vocab_size: int) -> torch.nn.Embedding | None:
    """The one tensor named like a BERT-like word embedding matrix in the folder's single
    safetensors file, as a frozen float32 embedding; None where that is not certain (no or
    several safetensors files, no or several such tensors, or a row count other than the
    config's vocabulary size), so the caller loads the encoder instead."""
    from safetensors import safe_open

    files = list(folder.glob("*.safetensors"))
    if len(files) != 1:
        return None
    with safe_open(str(files[0]), framework="pt") as weights:
        keys = [k for k in weights.keys() if k == _WORD_EMBEDDINGS_KEY or k.endswith("." + _WORD_EMBEDDINGS_KEY)]
        if len(keys) != 1:
            return None
        matrix = weights.get_tensor(keys[0])
    if matrix.ndim != 2 or matrix.shape[0] != vocab_size:
        return None
    return torch.nn.Embedding.from_pretrained(matrix.float(), freeze=True)


def resolve_device(spec: str) -> torch.device:
    """`auto` picks CUDA when available; otherwise cpu, cuda or cuda:N as given."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RosPromptError(f"--device {spec}: no CUDA device is available here; use --device cpu")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RosPromptError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        return device
    raise RosPromptError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
QUANTIZE = ("none", "int8")


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """`auto`: float32 on CPU; bfloat16 on a CUDA device that has it, else float16. On a CPU,
    bfloat16 only where the CPU has it natively."""
    spec = spec.strip().lower()
    if spec == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if spec not in DTYPES:
        raise RosPromptError(f"--dtype {spec!r}: expected auto, {', '.join(DTYPES)}")
    if device.type == "cpu" and spec == "float16":
        raise RosPromptError("--dtype float16 is for CUDA devices; on CPU use --quantize int8, or --dtype bfloat16 "
                             "where the CPU has it natively")
    if device.type == "cpu" and spec == "bfloat16" and not cpu_has_native_bf16():
        raise RosPromptError("--dtype bfloat16: this CPU has no native bfloat16 (AVX512-BF16 or AMX), so it would run "
                             "slower than float32; use --quantize int8")
    return DTYPES[spec]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX); elsewhere torch
    emulates it, slower than float32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(getattr(torch.cpu, name)() for name in checks if hasattr(torch.cpu, name))
    except RuntimeError:
        return False


def check_placement(device: str, dtype: str, quantize: str) -> tuple[torch.device, torch.dtype]:
    """Validate --device, --dtype and --quantize together, before any model is loaded."""
    dev = resolve_device(device)
    check_choice("--quantize", quantize, QUANTIZE)
    if quantize == "int8" and dev.type != "cpu":
        raise RosPromptError("--quantize int8 is for CPU; on a GPU use --dtype float16 or bfloat16 instead")
    if quantize == "int8" and dtype.strip().lower() not in ("auto", "float32"):
        raise RosPromptError(f"--quantize int8 runs int8 weights in float32 layers; it cannot be combined with --dtype "
                             f"{dtype.strip().lower()}: give one or the other")
    return dev, resolve_dtype(dtype, dev)


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation of the linear layers (weights int8 per output channel,
    activations quantised per batch), except the feed-forward down-projections: their inputs
    (GELU outputs) have outliers that per-tensor activation scales crush. Quantising those too,
    or weights per tensor, cost 4.5 to 9 points of SIB-200 dev accuracy in our measurements.
    Embeddings and layer norms stay float32."""
    import warnings

    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, but it still ships in torch
        # 2.13 and needs no extra package; its warnings are for developers, not for users.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_", category=UserWarning)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        chosen = {
            name: per_channel_dynamic_qconfig
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and not _is_ffn_down_projection(name)
        }
        return quantize_dynamic(model, chosen, inplace=True)


def _is_ffn_down_projection(name: str) -> bool:
    # BERT/XLM-R name it layer.N.output.dense (the attention's own is attention.output.dense).
    return name.endswith("output.dense") and "attention" not in name


def _fingerprint_dir(path: Path) -> str:
    """sha256 over the weight files of a local model directory, cached by size and mtime."""
    weights = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    if not weights:
        raise RosPromptError(f"{path}: no weight files (*.safetensors or *.bin) in this model folder")
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weights]
    key = hashlib.sha256(json.dumps([str(path.resolve()), stats]).encode()).hexdigest()
    cache_file = cache_home() / "fingerprints" / f"{key}.txt"
    if cache_file.exists():
        return cache_file.read_text().strip()
    digest = hashlib.sha256()
    for p in weights:
        digest.update(p.name.encode())
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    value = "sha256:" + digest.hexdigest()
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(value)
    except OSError:
        pass  # the cache is an optimisation only
    return value


def _identity(source: str, local_dir: Path | None, config: object) -> tuple[str, str]:
    if local_dir is not None:
        identity_file = local_dir / IDENTITY_FILE
        if identity_file.exists():
            data = json.loads(identity_file.read_text())
            return data["name"], data["hash"]
        return str(local_dir.resolve()), _fingerprint_dir(local_dir)
    # A hub checkpoint: transformers records the commit it resolved.
    commit = getattr(config, "_commit_hash", None)
    return source, f"git:{commit}" if commit else "unknown"


def _default_prefix(name: str) -> str:
    return "query: " if "e5" in name.lower().split("/")[-1] else ""


def _quiet_transformers() -> None:
    """Keep transformers' load reports and progress bars off stdout/stderr."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# Tokenizers read from a local tokenizer.json, by (path, size, mtime, tokenizer_config.json):
# parsing the 250k-piece vocabulary of XLM-R takes about 0.6 s, which every scorer built in one
# process (another dtype, runtime or prompt on the same model) would pay again. Sharing one is
# safe: nothing changes a tokenizer after loading, and encode_texts sets its truncation under a lock.
_TOKENIZERS: OrderedDict[tuple, object] = OrderedDict()
_TOKENIZERS_KEPT = 4


def load_tokenizer(path_or_id: str, local_only: bool) -> object:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer_json = Path(path_or_id) / "tokenizer.json"
    if not tokenizer_json.is_file():
        return AutoTokenizer.from_pretrained(path_or_id, local_files_only=local_only)
    config_path = Path(path_or_id) / "tokenizer_config.json"
    config_text = config_path.read_text() if config_path.exists() else "{}"
    stat = tokenizer_json.stat()
    key = (str(tokenizer_json.resolve()), stat.st_size, stat.st_mtime_ns, config_text)
    if key in _TOKENIZERS:
        _TOKENIZERS.move_to_end(key)
        return _TOKENIZERS[key]
    # Load tokenizer.json exactly as written. Some tokenizer classes of transformers 5
    # rebuild the pipeline from their own defaults and change ids (trailing spaces, <mask>).
    config = json.loads(config_text)
    specials = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}
    tok = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json), **specials)
    tok.model_max_length = int(config.get("model_max_length", 512))
    _TOKENIZERS[key] = tok
    while len(_TOKENIZERS) > _TOKENIZERS_KEPT:
        _TOKENIZERS.popitem(last=False)
    return tok


_MLM_ARCHITECTURES = ("ForMaskedLM", "ForPreTraining")


def has_mlm_head(config: object) -> bool:
    """Whether the checkpoint was saved with a masked-LM head (its config names such a class)."""
    return any(str(a).endswith(_MLM_ARCHITECTURES) for a in (getattr(config, "architectures", None) or []))


class MaskedLmHead(torch.nn.Module):
    """A masked LM's head split in two: `forward` is its transform (hidden state -> the vector the
    decoder reads, [B, H]) and `decoder` the vocabulary projection. Scores of a few label tokens
    are then dot products with their decoder rows: the full [B, V] logits, a 250k x H product per
    text, are never needed to label."""

    def __init__(self, transform: torch.nn.Module, decoder: torch.nn.Linear) -> None:
        super().__init__()
        self.transform = transform
        self.decoder = decoder

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.transform(hidden)

    @property
    def decoder_bias(self) -> torch.Tensor:
        bias = self.decoder.bias
        return bias if bias is not None else self.decoder.weight.new_zeros(self.decoder.weight.shape[0])


def _split_masked_lm(model: torch.nn.Module, source: str) -> tuple[torch.nn.Module, MaskedLmHead]:
    """A *ForMaskedLM model as (encoder, head): the head is then run on mask positions only."""
    prefix = model.base_model_prefix
    heads = [module for name, module in model.named_children() if name != prefix]
    decoder = model.get_output_embeddings()
    unsupported = RosPromptError(
        f"--model {source}: rosprompt cannot split this model's masked-LM head into transform and decoder; "
        f"use --verbalizer embed"
    )
    if len(heads) != 1 or not isinstance(decoder, torch.nn.Linear):
        raise unsupported
    model.set_output_embeddings(torch.nn.Identity())  # the head now ends at the decoder's input
    hidden = model.config.hidden_size
    with torch.no_grad():
        if heads[0](torch.zeros(1, hidden)).shape != (1, hidden):
            raise unsupported
    return getattr(model, prefix), MaskedLmHead(heads[0], decoder)


@contextmanager
def _load_errors(source: str, local_dir: Path | None) -> Iterator[None]:
    """Loading failures as one line naming --model."""
    try:
        yield
    except RosPromptError:
        raise
    except OSError as exc:
        hint = (
            "it is neither a local model folder nor reachable on the Hugging Face hub"
            if local_dir is None
            else "the folder is incomplete"
        )
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RosPromptError(f"--model {source}: cannot load it, {hint} ({first_line})") from exc


def load_backbone(
    model: str | None = None, device: str = "auto", dtype: str = "auto", quantize: str = "none"
) -> Backbone:
    """Load `model` (None or 'bundled' for the default; a HF id; a local folder), frozen, in
    `dtype` (see resolve_dtype), optionally with int8 linear layers (`quantize`, CPU only).

    The config and tokenizer are loaded now; the encoder of a model without a masked-LM head on
    first use of `Backbone.model` (a masked LM is split into encoder and head now)."""
    dev, torch_dtype = check_placement(device, dtype, quantize)
    _quiet_transformers()
    from transformers import AutoConfig

    source = model or DEFAULT_MODEL
    if source in BUNDLED_ALIASES:
        local_dir: Path | None = bundled_model_dir()
    elif Path(source).expanduser().exists():
        local_dir = Path(source).expanduser()
        if not local_dir.is_dir() or not (local_dir / "config.json").exists():
            raise RosPromptError(f"--model {source}: not a model folder (no config.json in it)")
    else:
        local_dir = None
    path_or_id = str(local_dir) if local_dir is not None else source
    local_only = local_dir is not None
    with _load_errors(source, local_dir):
        config = AutoConfig.from_pretrained(path_or_id, local_files_only=local_only)
        tokenizer = load_tokenizer(path_or_id, local_only)
    name, content_hash = _identity(source, local_dir, config)

    def load_encoder() -> torch.nn.Module:
        from transformers import AutoModel

        kwargs = {"add_pooling_layer": False} if config.model_type in ("bert", "roberta", "xlm-roberta") else {}
        with _load_errors(source, local_dir):
            encoder = AutoModel.from_pretrained(path_or_id, config=config, local_files_only=local_only, **kwargs)
        encoder.eval().requires_grad_(False).to(dev, dtype=torch_dtype)
        return quantize_int8(encoder) if quantize == "int8" else encoder

    backbone = Backbone(
        name=name,
        source=source,
        content_hash=content_hash,
        config=config,
        tokenizer=tokenizer,
        device=dev,
        text_prefix=_default_prefix(name),
        precision="int8" if quantize == "int8" else str(torch_dtype).removeprefix("torch."),
        load_encoder=load_encoder,
        folder=local_dir,
    )
    if has_mlm_head(config):
        from transformers import AutoModelForMaskedLM

        with _load_errors(source, local_dir):
            masked_lm = AutoModelForMaskedLM.from_pretrained(path_or_id, config=config, local_files_only=local_only)
        encoder, head = _split_masked_lm(masked_lm, source)
        encoder.eval().requires_grad_(False).to(dev, dtype=torch_dtype)
        # the head is never quantised: it reads only one position per text
        backbone.mlm_head = head.eval().requires_grad_(False).to(dev, dtype=torch_dtype)
        backbone.model = quantize_int8(encoder) if quantize == "int8" else encoder
    return backbone
