"""The verbalizers: how a label is read from the frozen backbone, one module each.

- base.py: the `Scorer` protocol and the `TrainingHead` base both verbalizers implement;
- embed.py: cosine between the prompted text vector and label-name embeddings (sentence encoders);
- mlm.py (with expansion.py, NPPrompt's label-word expansion): MLM logits at a `<mask>`;
- label_vectors.py: class vectors from label-name vectors, shared by inference and training;
- options.py: their options and defaults, which need no torch.

A new verbalizer is one module with a scorer and a training head, plus one entry in REGISTRY.
This module needs no torch either: the registry names each verbalizer's module, imported when
a scorer or a head is first asked for, so that the commands check --verbalizer and its options
(and show --help) without loading torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from rosprompt_cli.errors import RosPromptError, check_choice
from rosprompt_cli.verbalizers.options import HeadConfig, MlmOptions, MlmOverrides

if TYPE_CHECKING:
    from rosprompt_cli.backbone import Backbone
    from rosprompt_cli.prompt import SoftPrompt
    from rosprompt_cli.verbalizers.base import NamePool, Scorer, ScorerBase, TrainingHead

AUTO = "auto"


def _from_module(module: str, name: str) -> Any:
    """`name` from the module `module` of verbalizers/, imported now if it was not yet."""
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def _has_mlm_head(backbone: Backbone) -> bool:
    return backbone.mlm_head is not None


def _require_mlm_head(backbone: Backbone) -> None:
    from rosprompt_cli.verbalizers.mlm import require_mlm_head

    require_mlm_head(backbone)


def _embed_prompt_fields(config: HeadConfig) -> dict:
    return {"verbalizer_options": {}, "temperature": config.temperature}


def _mlm_prompt_fields(config: HeadConfig) -> dict:
    return {"verbalizer_options": asdict(config.mlm), "temperature": 1.0}  # MLM logits are used as they are


@dataclass(frozen=True)
class Verbalizer:
    """One registry entry: the module of verbalizers/ holding its scorer and training head
    (imported on first use: `scorer_class`, `head`), its options class (None: it takes no options,
    and an option given is refused in one line; else its scorer takes them as `options=`), which
    backbones it needs (`require` raises the one-line refusal) or suits (`suits`: the auto
    choice), and what a prompt trained with it stores (`prompt_fields`: PromptMeta's verbalizer_options and
    temperature, from the training config). Whether it can centre text vectors (--adapt) is its
    scorer class's `centres_text_vectors`."""

    module: str
    scorer_name: str
    head_name: str
    options: type[MlmOptions] | None
    suits: Callable[[Backbone], bool]
    require: Callable[[Backbone], None]
    prompt_fields: Callable[[HeadConfig], dict]

    @property
    def scorer_class(self) -> type[ScorerBase]:
        return _from_module(self.module, self.scorer_name)

    @property
    def head(self) -> type[TrainingHead]:
        return _from_module(self.module, self.head_name)

    def resolve_options(self, prompt: SoftPrompt | None, given: MlmOverrides) -> MlmOptions | None:
        """The options a scorer runs with: the prompt's, with every option given in their place."""
        if self.options is None:
            given.refuse()
            return None
        return self.options.from_prompt(prompt).with_overrides(given)

    def scorer(self, backbone: Backbone, prompt: SoftPrompt | None, given: MlmOverrides,
               max_length: int | None) -> Scorer:
        options = self.resolve_options(prompt, given)
        takes = {} if options is None else {"options": options}
        return self.scorer_class(backbone, prompt, max_length=max_length, **takes)


# In order of preference for --verbalizer auto: the first that suits the backbone is chosen. Each
# key is its scorer class's `verbalizer` (test_structure checks it).
REGISTRY: dict[str, Verbalizer] = {
    "mlm": Verbalizer("mlm", "MlmScorer", "MlmHead", MlmOptions, _has_mlm_head, _require_mlm_head, _mlm_prompt_fields),
    "embed": Verbalizer("embed", "EmbeddingScorer", "EmbedHead", None, lambda b: True, lambda b: None,
                        _embed_prompt_fields),
}
CHOICES = (AUTO, *REGISTRY)
# The verbalizer of a prompt file that names none: every file written before the MLM verbalizer.
LEGACY_PROMPT_VERBALIZER = "embed"


def check_verbalizer_options(verbalizer: str, mlm: MlmOverrides) -> None:
    """Refuse options the chosen verbalizer does not take (`auto`: decided once it is chosen)."""
    if verbalizer in REGISTRY:
        REGISTRY[verbalizer].resolve_options(None, mlm)


def prompt_fields(verbalizer: str, config: HeadConfig) -> dict:
    """What a prompt trained with `verbalizer` stores of its training config."""
    return REGISTRY[verbalizer].prompt_fields(config)


def check_verbalizer(requested: str) -> str:
    return check_choice("--verbalizer", requested, CHOICES)


def choose_verbalizer(requested: str, backbone: Backbone, prompt: SoftPrompt | None = None) -> str:
    """`auto`: the prompt's own verbalizer; without a prompt, the first in REGISTRY that suits
    the backbone (mlm for a masked LM, embed otherwise). An explicit choice is checked against both."""
    check_verbalizer(requested)
    if requested == AUTO:
        if prompt is not None:
            return prompt.meta.verbalizer
        return next(name for name, entry in REGISTRY.items() if entry.suits(backbone))
    REGISTRY[requested].require(backbone)
    if prompt is not None and prompt.meta.verbalizer != requested:
        raise RosPromptError(
            f"--verbalizer {requested}: the prompt was trained with the {prompt.meta.verbalizer} verbalizer; "
            f"drop --verbalizer or train a prompt for {requested}"
        )
    return requested


def make_scorer(
    backbone: Backbone,
    prompt: SoftPrompt | None = None,
    verbalizer: str = AUTO,
    max_length: int | None = None,
    mlm: MlmOverrides | None = None,
) -> Scorer:
    """A scorer for `backbone` with the chosen verbalizer; `mlm`: MLM options given by the user
    (None: the prompt's, else the defaults)."""
    return REGISTRY[choose_verbalizer(verbalizer, backbone, prompt)].scorer(backbone, prompt, mlm or MlmOverrides(),
                                                                           max_length)


def training_head(verbalizer: str, backbone: Backbone, config: HeadConfig, pool: NamePool) -> TrainingHead:
    return REGISTRY[verbalizer].head(backbone, config, pool)


# Names of verbalizers/' modules that need torch, imported from there on first use.
_LAZY = {"EmbeddingScorer": "embed", "MlmScorer": "mlm", "NamePool": "base", "Scorer": "base", "ScorerBase": "base",
         "TrainingHead": "base"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _from_module(_LAZY[name], name)


__all__ = [
    "AUTO", "CHOICES", "LEGACY_PROMPT_VERBALIZER", "REGISTRY", "EmbeddingScorer", "HeadConfig", "MlmOptions", "MlmOverrides", "MlmScorer", "NamePool",
    "Scorer", "ScorerBase", "TrainingHead", "Verbalizer", "check_verbalizer", "check_verbalizer_options",
    "choose_verbalizer", "make_scorer", "prompt_fields", "training_head",
]
