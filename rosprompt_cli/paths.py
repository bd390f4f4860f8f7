"""Where rosprompt keeps its per-user cache (converted models)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """ROSPROMPT_HOME if set, else $XDG_CACHE_HOME/rosprompt, else ~/.cache/rosprompt."""
    explicit = os.environ.get("ROSPROMPT_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "rosprompt"
