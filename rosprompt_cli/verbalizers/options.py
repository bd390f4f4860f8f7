"""The verbalizers' options and defaults, importable without torch: the commands read them for
--help and check them before any model is loaded (the scorers and heads that use them need torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

from rosprompt_cli.errors import RosPromptError, check_choice

if TYPE_CHECKING:
    from rosprompt_cli.prompt import SoftPrompt

# embed: how a label name is phrased before it is embedded, and the logits' temperature
DEFAULT_LABEL_TEMPLATE = "This text is about {}"  # chosen on SIB-200 dev (see CHANGELOG)
DEFAULT_TEMPERATURE = 0.05

# mlm: NPPrompt's label-word expansion (expansion.py) and how words make a label's score
AGGREGATES = ("max", "mean")
WORD_PIECES = ("first", "mean")
DEFAULT_NEIGHBOURS = 12
DEFAULT_TEMPLATE = "A {mask} news: {text}"  # NPPrompt's template for news topics
# The command-line flag of each MlmOptions field.
OPTION_FLAGS = {"template": "--mlm-template", "neighbours": "--neighbours", "aggregate": "--aggregate",
                "word_pieces": "--word-pieces"}


@dataclass(frozen=True)
class MlmOptions:
    """How the MLM verbalizer phrases the input and reads the mask."""

    template: str = DEFAULT_TEMPLATE
    neighbours: int = DEFAULT_NEIGHBOURS  # k of the NPPrompt expansion
    aggregate: str = "max"  # a class's score over its label words: max or mean
    word_pieces: str = "first"  # a multi-piece label word: its first piece or the mean of its pieces

    def __post_init__(self) -> None:
        if self.template.count("{mask}") != 1 or self.template.count("{text}") != 1:
            raise RosPromptError(
                f"--mlm-template {self.template!r}: must contain {{mask}} and {{text}} exactly once each"
            )
        if self.neighbours < 1:
            raise RosPromptError("--neighbours must be at least 1")
        check_choice("--aggregate", self.aggregate, AGGREGATES)
        check_choice("--word-pieces", self.word_pieces, WORD_PIECES)

    def with_overrides(self, overrides: MlmOverrides) -> MlmOptions:
        """These options with every value the overrides give in place of its own."""
        return MlmOptions(**(asdict(self) | overrides.given()))

    @classmethod
    def from_prompt(cls, prompt: SoftPrompt | None) -> MlmOptions:
        stored = prompt.meta.verbalizer_options if prompt is not None else {}
        return cls(**{k: v for k, v in stored.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class MlmOverrides:
    """The MLM options a user gave (None: the prompt's value, else the default), checked when
    made, so a bad value fails before any model is loaded."""

    template: str | None = None
    neighbours: int | None = None
    aggregate: str | None = None
    word_pieces: str | None = None

    def __post_init__(self) -> None:
        MlmOptions().with_overrides(self)  # validates every given value

    def given(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def refuse(self) -> None:
        """The embedding verbalizer was chosen: an MLM option given with it is a mistake worth naming."""
        given = list(self.given())
        if given:
            raise RosPromptError(
                f"{OPTION_FLAGS[given[0]]} is an option of the MLM verbalizer; this run uses the embedding verbalizer"
            )


@dataclass(frozen=True)
class HeadConfig:
    """What a training head, and the prompt file it trains for, take of the training
    configuration (training_config.TrainConfig.head_config makes one)."""

    prompt_length: int
    max_length: int | None
    label_template: str  # embed: how a label name is phrased
    temperature: float  # embed: the logits' temperature
    centre_languages: bool  # embed: language-centred class vectors
    mlm: MlmOptions  # mlm: template, expansion and aggregation
