"""Where the frozen encoder runs at inference: torch, or ONNX Runtime on a CPU.

`--runtime onnx` exports the encoder once per model content (and exporter and runtime version) into the
cache, taking input embeddings and the attention mask and returning the last hidden states, so
the soft prompt goes in as embeddings exactly as with torch. The embedding lookup, pooling, the
MLM head and both verbalizers stay in torch and in this project's code; `OnnxEncoder` stands in
for the torch encoder (`backbone.model`) and nothing else changes. `--quantize int8` on ONNX
Runtime is a second cache entry, quantised from the float32 graph (INT8_RECIPE says how).

Speed: for BERT-like encoders (FUSED_MODEL_TYPES) the graph is exported with the plain ("eager")
attention and then rewritten by ONNX Runtime's transformer optimizer into fused Attention,
SkipLayerNormalization and BiasGelu nodes; the SDPA export hides the attention pattern, so
nothing would be fused. The fused graph passes the same exactness check as the plain one, or the
plain one is kept.

Exactness first: at export the float32 graph is compared with torch on a few real batches (with
and without a prompt), the largest difference of the hidden states is kept in the cache entry's
metadata, and a graph beyond MAX_ABS_DIFF is refused. A cache entry is written in a temporary
folder and renamed into place under a lock, so two processes starting at once build it once; an
entry that is incomplete, from another version, or whose graph does not match the sha256 in its
metadata is rebuilt, never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from rosprompt_cli.backbone import Backbone
from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.paths import cache_home, exclusive_lock, sha256_file, write_json_atomically
from rosprompt_cli.spec import check_runtime

INSTALL_HINT = "--runtime onnx needs onnxruntime and onnx: pip install onnxruntime onnx"
OPSET = 17
FORMAT = 3  # of a cache entry; raise it when the export or the quantisation changes
MAX_ABS_DIFF = 1e-3  # largest hidden-state difference to torch a float32 graph may have
GRAPH_FILE = "encoder.onnx"
META_FILE = "meta.json"
# Dynamic int8 (weights per output channel, activations per batch) on every MatMul with a weight,
# except the feed-forward down-projections, whose GELU inputs have outliers a per-tensor
# activation scale crushes (README "Speed": what each choice cost on SIB-200 dev).
INT8_RECIPE = "per-channel, feed-forward down-projections in float32, fused attention as QAttention"
# model_type -> the transformer optimizer's model type whose fusions fit it
FUSED_MODEL_TYPES = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert"}
# Texts for the export check, in several scripts and lengths (written for this project).
CHECK_TEXTS = (
    "The council approved the new budget for schools and roads after a long debate.",
    "El equipo ganó el partido en el último minuto.",
    "Mvua kubwa imenyesha katika mji mkuu usiku kucha.",
    "科学家发现了一种新的治疗方法。",
    "Новый музей откроется весной.",
    "Short.",
)


def onnx_available() -> bool:
    """onnxruntime imports and the exporter (onnx) is installed. onnx itself is imported only
    to build a cache entry: importing it costs about 0.6 s, which a warm start need not pay."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return importlib.util.find_spec("onnx") is not None


def resolve_runtime(requested: str, device: torch.device, dtype: torch.dtype) -> str:
    """The runtime a run asks for. auto: ONNX Runtime for float32 (or int8) on a CPU where
    onnxruntime is installed, since its fused graph ran `label` at 1.7x torch's speed on our
    bench CPU with the same labels and scores within 1e-4 (bench/results/runtimes.md); torch
    elsewhere (a GPU, bfloat16/float16, no onnxruntime). build_scorer falls back to torch when
    auto's export fails. onnx where it cannot run: refused."""
    check_runtime(requested)
    if requested == "onnx":
        if device.type != "cpu":
            raise RosPromptError("--runtime onnx is for CPU; on a GPU use --runtime torch (what auto picks there)")
        if dtype != torch.float32:
            raise RosPromptError(f"--dtype {str(dtype).removeprefix('torch.')} runs on --runtime torch; "
                                 f"ONNX Runtime here runs float32 or --quantize int8")
        if not onnx_available():
            raise RosPromptError(INSTALL_HINT)
        return "onnx"
    if requested == "auto" and device.type == "cpu" and dtype == torch.float32 and onnx_available():
        return "onnx"
    return "torch"


class OnnxEncoder:
    """Runs the exported encoder where the torch one was called: `(inputs_embeds or input_ids,
    attention_mask) -> .last_hidden_state`, as torch tensors. Input ids are embedded with the
    torch embedding matrix first, as the prompt path always does."""

    def __init__(self, session: Any, config: Any, embeddings: torch.nn.Module) -> None:
        self.session = session
        self.config = config
        self._embeddings = embeddings

    def get_input_embeddings(self) -> torch.nn.Module:
        return self._embeddings

    def __call__(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 inputs_embeds: torch.Tensor | None = None) -> SimpleNamespace:
        if inputs_embeds is None:
            if input_ids is None:
                raise TypeError("OnnxEncoder needs input_ids or inputs_embeds")
            inputs_embeds = self._embeddings(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.int64)
        feeds = {"inputs_embeds": inputs_embeds.detach().float().cpu().numpy(),
                 "attention_mask": attention_mask.cpu().numpy().astype(np.int64, copy=False)}
        hidden = self.session.run(None, feeds)[0]
        return SimpleNamespace(last_hidden_state=torch.from_numpy(hidden))


class _EncoderFromEmbeddings(torch.nn.Module):
    """The graph exported: input embeddings and mask in, last hidden states out."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state


@dataclass(frozen=True)
class CacheEntry:
    """One exported graph in the cache: `<cache>/onnx/<key>/{encoder.onnx, meta.json}`."""

    folder: Path
    identity: dict[str, Any]

    @property
    def graph(self) -> Path:
        return self.folder / GRAPH_FILE

    def meta(self) -> dict[str, Any] | None:
        """The entry's metadata if the entry is complete, belongs to this identity and its graph
        has the recorded sha256; else None (the entry is rebuilt)."""
        try:
            meta = json.loads((self.folder / META_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("identity") != self.identity or not self.graph.is_file():
            return None
        if self.graph.stat().st_size != meta.get("graph_bytes") or sha256_file(self.graph) != meta.get("graph_sha256"):
            return None
        return meta


def int8_weights_reduced() -> bool:
    """Whether int8 weights take 7 bits here (ONNX Runtime's `reduce_range`), not 8. On an x86 CPU
    without VNNI, ONNX Runtime's uint8 x int8 kernels add pairs of products in 16-bit lanes, which
    saturate when both factors are large (an AVX2-only AMD EPYC moved the scores twice as far with
    full-range weights as with 7-bit ones; README "Speed"); 7-bit weights cannot (2 x 255 x 64 <
    2**15), and ONNX Runtime documents that range for such CPUs. With VNNI (and on Arm) the
    products are summed in 32 bits and the full range is kept. The CPU is asked through torch's
    cpuinfo (the cpuid instruction, which counts AVX512-VNNI), not /proc/cpuinfo."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    has_vnni = getattr(torch.cpu, "_is_vnni_supported", None)
    try:
        return not (has_vnni() if has_vnni is not None else False)
    except RuntimeError:
        return True


def cache_entry(backbone: Backbone, precision: str = "float32") -> CacheEntry:
    """Where the graph of `backbone` in `precision` (float32 or int8) is cached."""
    import onnxruntime

    identity: dict[str, Any] = {
        "model": backbone.content_hash, "precision": precision, "torch": torch.__version__,
        "onnx": importlib.metadata.version("onnx"), "onnxruntime": onnxruntime.__version__, "opset": OPSET, "format": FORMAT,
    }
    if precision == "int8":
        identity["recipe"] = INT8_RECIPE
        identity["weight_bits"] = 7 if int8_weights_reduced() else 8
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
    return CacheEntry(cache_home() / "onnx" / key, identity)


def _session(graph: Path, threads: int | None) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default, one per core
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


def _check_batches(backbone: Backbone) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input embeddings, mask) of the check texts, without and with a 16-vector prompt."""
    enc = backbone.tokenizer(list(CHECK_TEXTS), padding=True, return_tensors="pt")  # type: ignore[operator]
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.no_grad():
        embeds = backbone.word_embeddings(ids).float()
        prompt = backbone.word_embeddings(ids[0, 1:17]).float().unsqueeze(0).expand(ids.shape[0], -1, -1)
    prompted = torch.cat([embeds[:, :1], prompt, embeds[:, 1:]], dim=1)
    prompted_mask = torch.cat([mask[:, :1], torch.ones_like(mask[:, :16]), mask[:, 1:]], dim=1)
    return [(embeds, mask), (prompted, prompted_mask)]


def _max_abs_diff(backbone: Backbone, graph: Path) -> float:
    """Largest difference of the graph's hidden states to torch's, over the attended positions
    of the check batches; inf where the graph gives a non-finite value."""
    session = _session(graph, None)
    worst = 0.0
    for embeds, mask in _check_batches(backbone):
        with torch.no_grad():
            expected = backbone.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state.float()
        got = session.run(None, {"inputs_embeds": embeds.numpy(), "attention_mask": mask.numpy().astype(np.int64)})[0]
        diff = np.abs(expected.numpy() - got)[mask.bool().numpy()]
        worst = max(worst, float(diff.max()) if np.isfinite(diff).all() else float("inf"))
    return worst


@contextlib.contextmanager
def _eager_attention(model: torch.nn.Module) -> Iterator[None]:
    """The model with its plain attention implementation for the time of the export (the one
    whose graph the optimizer can fuse); restored afterwards, since torch runs faster on SDPA."""
    previous = getattr(model.config, "_attn_implementation", None)
    setter = getattr(model, "set_attn_implementation", None)
    if previous in (None, "eager") or setter is None:
        yield
        return
    setter("eager")
    try:
        yield
    finally:
        setter(previous)


def _fuse(graph: Path, fused: Path, config: Any) -> dict[str, int]:
    """Write `graph` with ONNX Runtime's transformer fusions applied to `fused`; the fused
    operators' counts ({} where this model type has no fusions, and nothing is written)."""
    optimizer_type = FUSED_MODEL_TYPES.get(getattr(config, "model_type", ""))
    if optimizer_type is None:
        return {}
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        with _quiet_root_logger():
            model = optimize_model(str(graph), model_type=optimizer_type, num_heads=config.num_attention_heads,
                                   hidden_size=config.hidden_size, opt_level=0)
    except Exception:  # noqa: BLE001 - fusing is only for speed: the plain graph serves
        return {}
    counts = {op: n for op, n in model.get_fused_operator_statistics().items() if n}
    if counts:
        model.save_model_to_file(str(fused))
    return counts


def _export_float32(backbone: Backbone, folder: Path) -> dict[str, Any]:
    """Export the encoder into `folder`, fused where the model type allows, and check it
    against torch."""
    embeds, mask = _check_batches(backbone)[0]
    axes = {0: "batch", 1: "tokens"}
    plain = folder / "plain.onnx"
    with warnings.catch_warnings(), _eager_attention(backbone.model):
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript; its warnings are for developers, not for users.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _EncoderFromEmbeddings(backbone.model).eval(), (embeds, mask), str(plain),
            input_names=["inputs_embeds", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes={"inputs_embeds": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=OPSET, dynamo=False,
        )
    diff = _max_abs_diff(backbone, plain)
    if not diff <= MAX_ABS_DIFF:
        raise RosPromptError(
            f"{backbone.name}: the ONNX export differs from torch by {diff:.2g} (over {MAX_ABS_DIFF:g}); "
            f"use --runtime torch"
        )
    fused = folder / "fused.onnx"
    counts = _fuse(plain, fused, backbone.model.config)
    fused_diff = _max_abs_diff(backbone, fused) if counts else float("inf")
    if fused_diff <= MAX_ABS_DIFF:
        os.replace(fused, folder / GRAPH_FILE)
        plain.unlink()
        return {"max_abs_diff": fused_diff, "fused": counts, "unfused_max_abs_diff": diff}
    fused.unlink(missing_ok=True)
    os.replace(plain, folder / GRAPH_FILE)
    return {"max_abs_diff": diff, "fused": {}}


def int8_excluded_nodes(graph: Path) -> list[str]:
    """The MatMul nodes INT8_RECIPE keeps in float32: the feed-forward down-projections, named
    `.../layer.N/output/dense/MatMul` by the exporter for BERT and XLM-R (the attention's own
    output projection sits under `attention/`)."""
    import onnx

    nodes = onnx.load(str(graph), load_external_data=False).graph.node
    return [n.name for n in nodes if n.op_type == "MatMul" and "/output/dense/" in n.name and "attention" not in n.name]


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    # onnxruntime.quantization logs advice for developers on the root logger
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _quantize_int8(backbone: Backbone, float32_graph: Path, folder: Path, reduce_range: bool) -> dict[str, Any]:
    """Quantise the float32 graph into `folder` after INT8_RECIPE, with 7-bit weights where
    `reduce_range` (int8_weights_reduced); its distance to torch is kept in the metadata (int8 is
    approximate by design; only non-finite output is refused)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    excluded = int8_excluded_nodes(float32_graph)
    with _quiet_root_logger():
        # DefaultTensorType: the fused nodes are outside ONNX's shape inference, which then
        # cannot type their outputs; they are float32.
        quantize_dynamic(str(float32_graph), str(folder / GRAPH_FILE), per_channel=True, reduce_range=reduce_range,
                         weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Attention"],
                         nodes_to_exclude=excluded, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    diff = _max_abs_diff(backbone, folder / GRAPH_FILE)
    if not np.isfinite(diff):
        raise RosPromptError(f"{backbone.name}: the int8 graph gives non-finite values; use --quantize none")
    return {"max_abs_diff": diff, "float32_kept": len(excluded), "weight_bits": 7 if reduce_range else 8}


def _ensure(entry: CacheEntry, build: Callable[[Path], dict[str, Any]], backbone: Backbone,
            threads: int | None) -> Any:
    """A session on `entry`'s graph, building the entry first unless it is complete and loads;
    under a lock, in a temporary folder renamed into place, so two processes never see half of
    one and build it once. The session that proves the entry loads is the one returned, so a
    warm start loads the graph once."""
    session = _valid_session(entry, threads)
    if session is not None:
        return session
    entry.folder.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(entry.folder.parent / f".{entry.folder.name}.lock"):
        session = _valid_session(entry, threads)  # another process built it meanwhile
        if session is not None:
            return session
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=entry.folder.parent))
        try:
            meta = build(tmp)
            meta |= {"identity": entry.identity, "backbone": backbone.name, "checked_texts": len(CHECK_TEXTS),
                     "graph_bytes": (tmp / GRAPH_FILE).stat().st_size, "graph_sha256": sha256_file(tmp / GRAPH_FILE)}
            write_json_atomically(tmp / META_FILE, meta, indent=2)
            shutil.rmtree(entry.folder, ignore_errors=True)  # a stale or broken entry
            os.replace(tmp, entry.folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return _session(entry.graph, threads)


def _valid_session(entry: CacheEntry, threads: int | None) -> Any | None:
    """A session on the entry's graph if the entry is complete, current and loads; else None."""
    if entry.meta() is None:
        return None
    try:
        return _session(entry.graph, threads)
    except Exception:  # noqa: BLE001 - any failure to load means: rebuild
        return None


def onnx_encoder(backbone: Backbone, threads: int | None = None, quantize: str = "none") -> OnnxEncoder:
    """The backbone's float32 encoder on ONNX Runtime (int8 with quantize="int8"), built into the
    cache first if needed. Errors are one line: the exporter cannot trace the model, the cache
    cannot be written, or the graph disagrees with torch."""
    float32 = cache_entry(backbone, "float32")

    def export_float32(folder: Path) -> dict[str, Any]:
        return _export_float32(backbone, folder)

    int8 = cache_entry(backbone, "int8") if quantize == "int8" else None

    def quantize_int8(folder: Path) -> dict[str, Any]:
        _ensure(float32, export_float32, backbone, 1)  # the int8 graph is made from the float32 one
        return _quantize_int8(backbone, float32.graph, folder, reduce_range=int8.identity["weight_bits"] == 7)

    try:
        if int8 is not None:
            session = _ensure(int8, quantize_int8, backbone, threads)
        else:
            session = _ensure(float32, export_float32, backbone, threads)
    except OSError as exc:
        raise RosPromptError(
            f"cannot write the ONNX export under {float32.folder.parent}: {exc.strerror or exc}; set ROSPROMPT_HOME "
            f"to a writable folder, or use --runtime torch"
        ) from exc
    except RosPromptError:
        raise
    except Exception as exc:  # noqa: BLE001 - the exporter cannot trace this model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RosPromptError(f"{backbone.name}: cannot export it to ONNX ({first}); use --runtime torch") from exc
    # a warm start never loads the torch encoder: the graph needs only its embedding table
    return OnnxEncoder(session, backbone.config, backbone.embedding_table())
