"""rosprompt: RoSPrompt soft prompts for cross-lingual, generalised zero-shot text labelling.

The library mirrors the CLI::

    from rosprompt_cli import LabelSet, build_scorer, evaluate, load_labelled
    scorer, _ = build_scorer(model=None)            # bundled multilingual-e5-small
    labels = LabelSet.from_names(["sports", "politics"])
    report = evaluate(scorer, load_labelled("samples/news_multilingual.csv", "text", "category"), labels)
"""

from rosprompt_cli.backbone import Backbone, load_backbone
from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.evaluation import evaluate, predict
from rosprompt_cli.io import open_source
from rosprompt_cli.label_run import LabelRun, RunRequest, RunSummary
from rosprompt_cli.labelled import LabelledData, load_labelled
from rosprompt_cli.labeling import LabelOptions, label_frames
from rosprompt_cli.labels import Label, LabelSet, load_label_file, parse_label_arg
from rosprompt_cli.metrics import Report, evaluate_predictions
from rosprompt_cli.output import TableWriter
from rosprompt_cli.prompt import PromptMeta, SoftPrompt
from rosprompt_cli.mlm import MlmOptions, MlmScorer
from rosprompt_cli.scorers import build_scorer, make_scorer
from rosprompt_cli.scoring import EmbeddingScorer
from rosprompt_cli.training import TrainConfig, train_prompt
from rosprompt_cli.version import __version__

__all__ = [
    "Backbone", "EmbeddingScorer", "Label", "LabelOptions", "LabelRun", "LabelSet", "LabelledData", "MlmOptions",
    "MlmScorer", "PromptMeta",
    "Report", "RosPromptError", "RunRequest", "RunSummary", "SoftPrompt", "TableWriter", "TrainConfig",
    "__version__", "build_scorer", "evaluate", "evaluate_predictions", "label_frames", "load_backbone", "load_label_file",
    "load_labelled", "make_scorer", "open_source", "parse_label_arg", "predict", "train_prompt",
]
