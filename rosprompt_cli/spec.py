"""Which scorer a command asks for, as one validated description, and how it is built.

`ScorerSpec` is checked when it is made (before any model is loaded) and built into a scorer
by `build_scorer`; label, eval, train and every Ray worker use the same class, so a scorer is
described one way everywhere. The lexicon default (`label_set_for`) sits here too, since it
depends on the scorer: the library and the CLI apply it the same way.

A caller that runs several jobs pays the model load once: `run_label` and `run_eval` take a
scorer already built, or a factory from spec to scorer such as a `ScorerCache` (`scorer_for`
says which is used).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from rosprompt_cli.errors import RosPromptError, check_choice
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.lexicon import expand
from rosprompt_cli.prompt import SoftPrompt, shipped_prompt_path
from rosprompt_cli.verbalizers import (
    AUTO,
    REGISTRY,
    MlmOverrides,
    check_verbalizer,
    check_verbalizer_options,
    choose_verbalizer,
    make_scorer,
)

if TYPE_CHECKING:
    from rosprompt_cli.backbone import Backbone
    from rosprompt_cli.verbalizers.base import Scorer

# torch, the backbone and the runtimes are imported where a scorer is built, not here: a
# ScorerSpec is made and checked, and the commands' --help shown, without loading torch.
RUNTIMES = ("auto", "torch", "onnx")


def check_runtime(value: str) -> str:
    return check_choice("--runtime", value, RUNTIMES)


@dataclass(frozen=True)
class ScorerSpec:
    """The backbone, the prompt and the verbalizer a run scores with.

    model: 'bundled' or None (the prompt's own backbone, else bundled), a Hugging Face id or a
    local folder. prompt: a prompt file; None with use_prompt: the shipped default prompt when
    it matches the backbone. use_prompt=False: no prompt (plain zero-shot, or NPPrompt).
    runtime: where the encoder runs: auto (ONNX Runtime on a CPU, else torch), torch or onnx
    (runtime.py).
    threads: CPU threads of either runtime (None: OMP_NUM_THREADS when set, else one per core).
    """

    model: str | None = None
    prompt: str | None = None
    use_prompt: bool = True
    verbalizer: str = AUTO
    mlm: MlmOverrides = field(default_factory=MlmOverrides)
    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "none"
    max_length: int | None = None
    runtime: str = "auto"
    threads: int | None = None

    def __post_init__(self) -> None:
        check_verbalizer(self.verbalizer)
        check_runtime(self.runtime)
        if self.threads is not None and self.threads < 1:
            raise RosPromptError("--threads must be at least 1")
        check_verbalizer_options(self.verbalizer, self.mlm)

    def check_placement(self) -> str:
        """Validate device, dtype, quantisation and runtime here, before the input pre-pass; the
        runtime the run will use."""
        from rosprompt_cli.backbone import check_placement
        from rosprompt_cli.runtime import resolve_runtime

        device, dtype = check_placement(self.device, self.dtype, self.quantize)
        return resolve_runtime(self.runtime, device, dtype)

    def with_absolute_paths(self) -> ScorerSpec:
        """This spec with local paths made absolute (Ray workers run in other folders)."""
        return replace(self, model=_absolute(self.model), prompt=_absolute(self.prompt))


def _absolute(path: str | None) -> str | None:
    """A local path made absolute; a hub id or name unchanged."""
    if path is None or not Path(path).expanduser().exists():
        return path
    return str(Path(path).expanduser().resolve())


def build_scorer(spec: ScorerSpec) -> Scorer:
    """Load the backbone and prompt `spec` names; `scorer.prompt_note` says which prompt is in use.

    Without a model, a given prompt's own backbone is loaded. Without a prompt file, the shipped
    default prompt is used when it belongs to the backbone (and the verbalizer), else no prompt:
    plain zero-shot, which with the MLM verbalizer is NPPrompt.
    """
    from rosprompt_cli.backbone import load_backbone

    runtime = spec.check_placement()
    # On ONNX Runtime, int8 is made from the float32 graph (runtime.py), not by torch.
    torch_quantize = spec.quantize if runtime == "torch" else "none"
    prompt: SoftPrompt | None = None
    if spec.use_prompt and spec.prompt:
        prompt = SoftPrompt.load(spec.prompt)
        backbone = load_backbone(spec.model or prompt.meta.backbone_source, spec.device, spec.dtype, torch_quantize)
        prompt.check_backbone(backbone.name, backbone.content_hash, backbone.hidden_size, source=spec.prompt)
        note = f"prompt {spec.prompt}"
    else:
        backbone = load_backbone(spec.model, spec.device, spec.dtype, torch_quantize)
        shipped = shipped_prompt_path() if spec.use_prompt else None
        plain = REGISTRY[choose_verbalizer(spec.verbalizer, backbone)].scorer_class.plain_note
        note = plain
        if shipped is not None:
            candidate = SoftPrompt.load(shipped)
            if candidate.meta.backbone_hash != backbone.content_hash:
                note = f"{plain}: the shipped prompt is for another backbone"
            elif spec.verbalizer not in (AUTO, candidate.meta.verbalizer):
                note = f"{plain}: the shipped prompt is for the {candidate.meta.verbalizer} verbalizer"
            else:
                prompt, note = candidate, f"shipped prompt {shipped.name}"
    _place(backbone, spec, runtime)
    scorer = make_scorer(backbone, prompt, spec.verbalizer, spec.max_length, spec.mlm)
    scorer.prompt_note = note
    return scorer


ScorerFactory = Callable[[ScorerSpec], "Scorer"]


@cache
def _torch_threads() -> int:
    """torch's own choice of threads, read before the first scorer sets them."""
    import torch

    return torch.get_num_threads()


def scorer_for(spec: ScorerSpec, given: Scorer | ScorerFactory | None = None) -> Scorer:
    """The scorer a job runs with: `given` itself when it is a built scorer (the job's spec is
    then not read), else `given(spec)` for a factory, else a new one (build_scorer)."""
    from rosprompt_cli.verbalizers.base import Scorer

    if given is None:
        return build_scorer(spec)
    if isinstance(given, Scorer):
        return given
    return given(spec)


class ScorerCache:
    """A scorer factory that builds each distinct scorer once and keeps the `size` most recently
    used: pass it to several `run_label`/`run_eval` calls and the model loads once.

    Two specs give the same scorer when they name the same things and nothing they name changed
    on disk: the key holds the spec with its paths made absolute, the size and time of the
    prompt file and of the files in a local model folder, the cache folder (ROSPROMPT_HOME) and
    the default threads. `loads` counts the scorers built.
    """

    def __init__(self, size: int = 4, build: ScorerFactory = build_scorer) -> None:
        if size < 1:
            raise ValueError("a ScorerCache keeps at least one scorer")
        self.size = size
        self.loads = 0
        self._build = build
        self._scorers: OrderedDict[tuple, Scorer] = OrderedDict()

    def __call__(self, spec: ScorerSpec) -> Scorer:
        key = _cache_key(spec)
        if key in self._scorers:
            self._scorers.move_to_end(key)
            return self._scorers[key]
        scorer = self._build(spec)
        self.loads += 1
        self._scorers[key] = scorer
        while len(self._scorers) > self.size:
            self._scorers.popitem(last=False)
        return scorer

    def clear(self) -> None:
        self._scorers.clear()


def _stamp(path: str | None) -> tuple:
    """What tells a changed local file or folder from the one a scorer was built from."""
    if path is None or not Path(path).exists():
        return ()
    target = Path(path)
    files = sorted(target.iterdir()) if target.is_dir() else [target]
    return tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file())


def _cache_key(spec: ScorerSpec) -> tuple:
    from rosprompt_cli.backbone import check_placement

    absolute = spec.with_absolute_paths()
    # "auto" and what it resolves to here are one scorer (not the runtime: auto may fall back to torch)
    device, dtype = check_placement(spec.device, spec.dtype, spec.quantize)
    absolute = replace(absolute, device=str(device), dtype=str(dtype))
    return (absolute, _stamp(absolute.prompt), _stamp(absolute.model), os.environ.get("ROSPROMPT_HOME"),
            default_threads())


def default_threads() -> int | None:
    """The threads a run takes without --threads: OMP_NUM_THREADS when it holds a positive whole
    number (torch already follows it; ONNX Runtime does not on its own), else None (one per core)."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def _place(backbone: Backbone, spec: ScorerSpec, runtime: str) -> None:
    """Set the threads and put the encoder on `runtime` (onnx: the cached export, runtime.py;
    torch: loaded now, so that its load is not timed as part of the first batch).

    On ONNX Runtime, torch only joins the pieces (the embedding lookup, pooling, one product per
    chunk with the label vectors): one torch thread, so that torch's threads never wait for cores
    that ONNX Runtime and the tokenizer are using (bench/results/cpu_side.md)."""
    import torch

    from rosprompt_cli.backbone import quantize_int8
    from rosprompt_cli.runtime import onnx_encoder

    threads = spec.threads or default_threads()
    torch.set_num_threads(threads or _torch_threads())
    if runtime == "onnx":
        try:
            backbone.model = onnx_encoder(backbone, threads, spec.quantize)  # type: ignore[assignment]
            backbone.runtime = "onnx"
            torch.set_num_threads(1)
        except RosPromptError as exc:
            if spec.runtime != "auto":
                raise
            # auto on a model ONNX Runtime cannot take: the run goes on on torch and says why
            backbone.runtime_note = f"on torch, ONNX Runtime failed: {exc}"
            if spec.quantize == "int8":
                backbone.model = quantize_int8(backbone.model)
        if spec.quantize == "int8":
            backbone.precision = "int8"
    backbone.model  # noqa: B018 - the property loads the torch encoder if the runtime needs it


def label_set_for(scorer: Scorer, label_set: LabelSet, lexicon: bool | None) -> tuple[LabelSet, str]:
    """The label set a run scores with, and a note for status lines: with lexicon names when
    `lexicon` asks, and by default only without a prompt (measured on SIB-200 dev: the lexicon
    helps the bare backbone, not a trained prompt; README "Lexicon")."""
    if lexicon if lexicon is not None else scorer.prompt is None:
        return expand(label_set), ", lexicon label names"
    return label_set, ""
