"""rosprompt: RoSPrompt soft prompts for cross-lingual, generalised zero-shot text labelling.

The library does everything the CLI does; each command is one call here::

    from rosprompt_cli import LabelJob, LabelSet, run_label
    result = run_label(LabelJob("samples/news_multilingual.csv", LabelSet.from_names(["sports", "politics"]),
                                out="tagged.parquet"))

    from rosprompt_cli import EvalJob, run_eval          # rosprompt eval
    from rosprompt_cli import TrainJob, run_train        # rosprompt train

Lower level: `build_scorer(ScorerSpec(...))` gives a scorer (verbalizers/), `evaluate` and
`label_frames` use one on data already in memory, `train_prompt` trains on a loaded backbone.
"""

from rosprompt_cli.adapt import AdaptOptions, Centres
from rosprompt_cli.backbone import Backbone, load_backbone
from rosprompt_cli.errors import ExitCode, RosPromptError
from rosprompt_cli.evaluation import EvalJob, EvalResult, evaluate, predict, run_eval
from rosprompt_cli.events import Event, Notice, RowsDone, RowsFinished, RowsStarted
from rosprompt_cli.examples import LabelledData, load_labelled
from rosprompt_cli.file_run import FileRun, RunRequest
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
from rosprompt_cli.training import TrainConfig, TrainJob, run_train, train_prompt
from rosprompt_cli.verbalizers import EmbeddingScorer, MlmOptions, MlmOverrides, MlmScorer, Scorer, make_scorer
from rosprompt_cli.version import __version__

__all__ = [
    "AdaptOptions", "Backbone", "Centres", "EmbeddingScorer", "EvalJob", "EvalResult", "Event", "ExitCode", "FileRun", "Label", "LabelJob",
    "LabelOptions", "LabelResult", "LabelSet", "LabelledData", "MlmOptions", "MlmOverrides", "MlmScorer", "Notice",
    "PromptMeta", "RayRequest", "Report", "RosPromptError", "RowsDone", "RowsFinished", "RowsStarted", "RunRequest",
    "RunSummary", "Scorer", "ScorerCache", "ScorerSpec", "SoftPrompt", "TableWriter", "TrainConfig", "TrainJob", "__version__",
    "build_scorer", "evaluate", "evaluate_predictions", "label_frames", "label_set_for", "load_backbone",
    "load_label_file", "load_labelled", "make_scorer", "open_source", "parse_label_arg", "predict", "run_eval",
    "run_label", "run_train", "scorer_for", "train_prompt",
]
