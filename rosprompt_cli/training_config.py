"""What `rosprompt train` is asked to do: the training configuration (`TrainConfig`, with the
defaults `train` uses) and the job (`TrainJob`), checked when made. No torch here: the command
shows its --help and refuses a bad value without loading it (training.py does the training).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rosprompt_cli.errors import RosPromptError, check_choice
from rosprompt_cli.labels import LabelSet
from rosprompt_cli.paths import refuse_shared_paths
from rosprompt_cli.verbalizers import check_verbalizer, check_verbalizer_options
from rosprompt_cli.verbalizers.options import DEFAULT_LABEL_TEMPLATE, DEFAULT_TEMPERATURE, HeadConfig, MlmOptions, MlmOverrides

# The robustness penalties --penalty takes (penalties.py builds one per name).
NO_PENALTY = "none"
PENALTIES = ("kl", "variance", "l2")
PENALTY_SEPARATOR = "+"  # --penalty kl+l2 combines penalties


def penalty_names(spec: str) -> list[str]:
    """`none`, one name, or names joined by '+'; each checked."""
    names = [name.strip() for name in spec.split(PENALTY_SEPARATOR)]
    for name in names:
        check_choice("--penalty", name or spec, (NO_PENALTY, *PENALTIES))
    return [name for name in names if name != NO_PENALTY]


@dataclass
class TrainConfig:
    prompt_length: int = 16
    epochs: int = 30
    lr: float = 1e-2
    batch_size: int = 16
    seed: int = 0
    temperature: float = DEFAULT_TEMPERATURE
    warmup_fraction: float = 0.1
    init_text: str = "This text is about"  # prompt initialised from these token embeddings
    max_length: int = 256
    label_template: str = DEFAULT_LABEL_TEMPLATE
    # RoSPrompt ingredients (objective.py); all off = plain cross-entropy soft prompt tuning.
    language_keep: float = 1.0  # label-language dropout: fraction of label languages kept per step
    smoothing: float = 0.0  # contrastive label smoothing ε
    penalty: str = NO_PENALTY  # none | kl | variance | l2, or several joined by + (penalties.py)
    penalty_weight: float = 0.0  # λ
    # Open-world negatives closer than this (cosine of class vectors) to a training class are
    # near-synonyms of it (tourism for travel), not contrasts, and are left out.
    negative_max_similarity: float = 0.3
    # Language-centred class vectors in training (objective.class_vectors). Off: on a 30-language
    # SIB-200 dev subsample they made the prompt over-fit (protocol G 55.4 vs 62.0 with plain means).
    centre_languages: bool = False
    # auto: mlm for a masked LM, embed for an encoder without an MLM head (verbalizers.choose_verbalizer)
    verbalizer: str = "auto"
    mlm: MlmOptions = field(default_factory=MlmOptions)

    def __post_init__(self) -> None:
        checks = {
            "--prompt-len": self.prompt_length >= 1,
            "--epochs": self.epochs >= 1,
            "--lr": self.lr > 0,
            "--batch-size": self.batch_size >= 1,
            "--max-length": self.max_length > self.prompt_length + 2,
        }
        for option, ok in checks.items():
            if not ok:
                raise RosPromptError(f"{option}: value out of range")
        if not 0.0 < self.language_keep <= 1.0:
            raise RosPromptError("--language-keep must be in (0, 1]")
        if not 0.0 <= self.smoothing < 1.0:
            raise RosPromptError("--smoothing must be in [0, 1)")
        penalty_names(self.penalty)
        check_verbalizer(self.verbalizer)
        if self.penalty_weight < 0:
            raise RosPromptError("--penalty-weight must be non-negative")
        if "{}" not in self.label_template:
            raise RosPromptError("--label-template must contain {} where the label name goes")

    def head_config(self) -> HeadConfig:
        """The part of this configuration a verbalizer's training head uses."""
        return HeadConfig(prompt_length=self.prompt_length, max_length=self.max_length,
                          label_template=self.label_template, temperature=self.temperature,
                          centre_languages=self.centre_languages, mlm=self.mlm)


# What `rosprompt train` uses by default: the RoSPrompt system of bench/quality.py (with the
# lexicon's label names, which train_prompt takes as an argument; no open-world negatives).
ROSPROMPT_DEFAULTS = TrainConfig(language_keep=0.5, smoothing=0.1, penalty="kl", penalty_weight=1.0)


DEV_SPLITS = ("validation", "dev", "test")  # a dataset's split to select epochs on, in order of preference


@dataclass(frozen=True)
class TrainJob:
    """One `rosprompt train`: labelled data (a table file, a datasets save_to_disk folder, or
    hf:NAME[:split]) to a prompt file at `out`.

    labels: the label set, e.g. with more names per label (None: the gold labels). shots: that
    many examples per class, sampled with config.seed (None: all). lexicon: also name each label
    the lexicon knows in its ~40 languages (multilingual labels). negatives: open-world
    negative classes from the lexicon. mlm: the MLM options given (the MLM verbalizer only).
    """

    input: str
    out: str
    config: TrainConfig = field(default_factory=lambda: ROSPROMPT_DEFAULTS)
    text_col: str = "text"
    label_col: str = "label"
    labels: LabelSet | None = None
    shots: int | None = None
    dev: str | None = None
    fmt: str | None = None
    split: str | None = None
    force: bool = False
    model: str | None = None
    device: str = "auto"
    lexicon: bool = True
    negatives: bool = False
    mlm: MlmOverrides = field(default_factory=MlmOverrides)

    def __post_init__(self) -> None:
        refuse_shared_paths({"the input": self.input, "--out": self.out})  # the prompt would replace it
        refuse_shared_paths({"--dev": self.dev, "--out": self.out})
        if Path(self.out).is_dir():
            raise RosPromptError(f"{self.out}: is a folder; give --out a prompt file name, e.g. {Path(self.out) / 'prompt.safetensors'}")
        if Path(self.out).exists() and not self.force:
            raise RosPromptError(f"{self.out}: prompt file exists; pass --force to overwrite it")
        if self.shots is not None and self.shots < 1:
            raise RosPromptError("--shots must be at least 1")
        check_verbalizer_options(self.config.verbalizer, self.mlm)
