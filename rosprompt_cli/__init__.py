# ruff: noqa: F401
"""rosprompt: RoSPrompt soft prompts for cross-lingual, generalised zero-shot text labelling.

The library does everything the CLI does; each command is one call here::

    from rosprompt_cli import LabelJob, LabelSet, run_label
    result = run_label(LabelJob("samples/news_multilingual.csv", LabelSet.from_names(["sports", "politics"]),
                                out="tagged.parquet"))

    from rosprompt_cli import EvalJob, run_eval          # rosprompt eval
    from rosprompt_cli import TrainJob, run_train        # rosprompt train

Lower level: `build_scorer(ScorerSpec(...))` gives a scorer (verbalizers/), `evaluate` and
`label_frames` use one on data already in memory, `train_prompt` trains on a loaded backbone.

Importing the package loads none of its modules: each name is imported from its module on first
use (PEP 562), so that a program using one part (label sets, metrics) does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module of this package that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["AdaptOptions", "Centres"], "adapt"),
    **dict.fromkeys(["Backbone", "load_backbone"], "backbone"),
    **dict.fromkeys(["ExitCode", "RosPromptError"], "errors"),
    **dict.fromkeys(["EvalJob", "EvalResult", "evaluate", "predict", "run_eval"], "evaluation"),
    **dict.fromkeys(["Event", "Notice", "RowsDone", "RowsFinished", "RowsStarted"], "events"),
    **dict.fromkeys(["LabelledData", "load_labelled"], "examples"),
    **dict.fromkeys(["FileOptions", "FileRun", "RunRequest"], "file_run"),
    **dict.fromkeys(["LabelOptions", "label_frames"], "frames"),
    **dict.fromkeys(["open_source"], "readers"),
    **dict.fromkeys(["LabelJob", "LabelResult", "run_label"], "job"),
    **dict.fromkeys(["Label", "LabelSet", "load_label_file", "parse_label_arg"], "labels"),
    **dict.fromkeys(["Report", "evaluate_predictions"], "metrics"),
    **dict.fromkeys(["TableWriter"], "output"),
    **dict.fromkeys(["PromptMeta", "SoftPrompt"], "prompt"),
    **dict.fromkeys(["RayRequest"], "ray_engine"),
    **dict.fromkeys(["ScorerCache", "ScorerSpec", "build_scorer", "label_set_for", "scorer_for"], "spec"),
    **dict.fromkeys(["RunSummary"], "summary"),
    **dict.fromkeys(["TrainConfig", "TrainJob"], "training_config"),
    **dict.fromkeys(["run_train", "train_prompt"], "training"),
    **dict.fromkeys(["EmbeddingScorer", "MlmOptions", "MlmOverrides", "MlmScorer", "Scorer", "make_scorer"], "verbalizers"),
    **dict.fromkeys(["__version__"], "version"),
}

__all__ = sorted(_EXPORTS)

# What type checkers and editors see (imported for them alone: the file's noqa); test_structure
# checks that it names the same names, from the same modules, as _EXPORTS.
if TYPE_CHECKING:
    from rosprompt_cli.adapt import AdaptOptions, Centres
    from rosprompt_cli.backbone import Backbone, load_backbone
    from rosprompt_cli.errors import ExitCode, RosPromptError
    from rosprompt_cli.evaluation import EvalJob, EvalResult, evaluate, predict, run_eval
    from rosprompt_cli.events import Event, Notice, RowsDone, RowsFinished, RowsStarted
    from rosprompt_cli.examples import LabelledData, load_labelled
    from rosprompt_cli.file_run import FileOptions, FileRun, RunRequest
    from rosprompt_cli.frames import LabelOptions, label_frames
    from rosprompt_cli.readers import open_source
    from rosprompt_cli.job import LabelJob, LabelResult, run_label
    from rosprompt_cli.labels import Label, LabelSet, load_label_file, parse_label_arg
    from rosprompt_cli.metrics import Report, evaluate_predictions
    from rosprompt_cli.output import TableWriter
    from rosprompt_cli.prompt import PromptMeta, SoftPrompt
    from rosprompt_cli.ray_engine import RayRequest
    from rosprompt_cli.spec import ScorerCache, ScorerSpec, build_scorer, label_set_for, scorer_for
    from rosprompt_cli.summary import RunSummary
    from rosprompt_cli.training import run_train, train_prompt
    from rosprompt_cli.training_config import TrainConfig, TrainJob
    from rosprompt_cli.verbalizers import EmbeddingScorer, MlmOptions, MlmOverrides, MlmScorer, Scorer, make_scorer
    from rosprompt_cli.version import __version__


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rosprompt_cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"rosprompt_cli.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
