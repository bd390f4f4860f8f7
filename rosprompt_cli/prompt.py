"""The soft prompt: n trainable vectors plus the metadata that says where they belong.

A prompt file is a few KB of safetensors: one tensor `prompt` of shape [n, hidden] and a JSON
document under the metadata key `rosprompt`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rosprompt_cli.errors import RosPromptError
from rosprompt_cli.verbalizers import LEGACY_PROMPT_VERBALIZER, REGISTRY
from rosprompt_cli.version import __version__

if TYPE_CHECKING:
    import torch


def _file_mode() -> int:
    """The mode a new file gets under this process's umask (read at import, before any thread)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()
FORMAT_VERSION = 2  # 2: the calibration of the scores (older files load, with none)
_TENSOR_KEY = "prompt"
_META_KEY = "rosprompt"


@dataclass
class PromptMeta:
    backbone_name: str
    backbone_hash: str
    hidden_size: int
    prompt_length: int
    backbone_source: str = "bundled"  # what --model was: 'bundled', a hub id or a local folder
    verbalizer: str = LEGACY_PROMPT_VERBALIZER  # files written before the MLM verbalizer name none
    text_prefix: str = ""
    label_template: str = "{}"
    temperature: float = 0.05
    # Verbalizer settings beyond the above; the MLM verbalizer's template, neighbours, aggregate
    # and word pieces (mlm.MlmOptions).
    verbalizer_options: dict[str, Any] = field(default_factory=dict)
    train_labels: dict[str, list[str]] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    # How the scores are calibrated (calibration.Calibration.as_dict()); None in files written
    # before calibration existed: they take the backbone's default (calibration.default_calibration).
    calibration: dict[str, Any] | None = None
    tool_version: str = __version__
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.prompt_length < 1:
            raise ValueError("prompt_length must be at least 1")
        if self.verbalizer not in REGISTRY:
            raise ValueError(f"unknown verbalizer {self.verbalizer!r}")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")
        if self.calibration is not None:
            from rosprompt_cli.calibration import Calibration

            Calibration.from_dict(self.calibration)  # a bad value fails here, as invalid metadata


@dataclass
class SoftPrompt:
    vectors: torch.Tensor  # [prompt_length, hidden_size], float32
    meta: PromptMeta

    def __post_init__(self) -> None:
        expected = (self.meta.prompt_length, self.meta.hidden_size)
        if tuple(self.vectors.shape) != expected:
            raise ValueError(f"prompt tensor has shape {tuple(self.vectors.shape)}, metadata says {expected}")

    def save(self, path: str | Path) -> Path:
        """Write atomically: a reader never sees a half-written prompt file."""
        import torch  # here and in load, not at the top: a command's options read without torch
        from safetensors.torch import save_file

        path = Path(path)
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(
            {_TENSOR_KEY: self.vectors.detach().to("cpu", torch.float32).contiguous()},
            str(tmp),
            metadata={_META_KEY: json.dumps(asdict(self.meta))},
        )
        tmp.chmod(_FILE_MODE)  # safetensors creates files only their owner can read
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SoftPrompt:
        import torch
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise RosPromptError(f"{path}: prompt file not found")
        try:
            with safe_open(str(path), framework="pt") as fh:
                raw_meta = (fh.metadata() or {}).get(_META_KEY)
                if raw_meta is None:
                    raise RosPromptError(f"{path}: not a rosprompt prompt file (no '{_META_KEY}' metadata)")
                if _TENSOR_KEY not in fh.keys():
                    raise RosPromptError(f"{path}: not a rosprompt prompt file (no '{_TENSOR_KEY}' tensor)")
                vectors = fh.get_tensor(_TENSOR_KEY).to(torch.float32)
        except RosPromptError:
            raise
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise RosPromptError(f"{path}: unreadable or corrupt prompt file ({exc}); retrain or re-copy it") from exc
        try:
            data = json.loads(raw_meta)
            if data.get("format_version", 0) > FORMAT_VERSION:
                raise RosPromptError(
                    f"{path}: prompt format {data['format_version']} is newer than this rosprompt "
                    f"understands ({FORMAT_VERSION}); upgrade rosprompt"
                )
            meta = PromptMeta(**data)
            return cls(vectors, meta)
        except RosPromptError:
            raise
        except (TypeError, ValueError, KeyError) as exc:
            raise RosPromptError(f"{path}: invalid prompt metadata ({exc})") from exc

    def check_backbone(self, name: str, content_hash: str, hidden_size: int, source: str = "prompt") -> None:
        """Refuse to run on a backbone other than the one this prompt was trained on."""
        m = self.meta
        if m.hidden_size != hidden_size or m.backbone_hash != content_hash:
            raise RosPromptError(
                f"{source}: trained on backbone {m.backbone_name} ({m.backbone_hash[:19]}, hidden "
                f"{m.hidden_size}) but the model in use is {name} ({content_hash[:19]}, hidden "
                f"{hidden_size}); pass --model {m.backbone_name} or train a prompt for this model"
            )


DEFAULT_PROMPT_FILE = "default.safetensors"


def shipped_prompt_path() -> Path | None:
    """The default prompt shipped with the package (installed wheel or source checkout), if any."""
    package_dir = Path(__file__).resolve().parent
    for folder in (package_dir / "_prompts", package_dir.parent / "prompts"):
        candidate = folder / DEFAULT_PROMPT_FILE
        if candidate.is_file():
            return candidate
    return None
