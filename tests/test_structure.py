"""The package's structure (issue 33): every module imports on its own, in a fresh interpreter
(an import cycle shows as an ImportError for some first module), and no module outside
verbalizers/ names a verbalizer, nor does verbalizers/ import the training loop."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest

from conftest import REPO

PACKAGE = REPO / "rosprompt_cli"


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_imports_on_its_own():
    modules = [m for m in _modules() if not m.endswith("__main__")]
    assert len(modules) > 30
    # one interpreter per module would cost a torch import each: a child imports them one by
    # one, each after removing every rosprompt_cli module the previous one loaded
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {modules!r}:\n"
        "    for loaded in [m for m in sys.modules if m.startswith('rosprompt_cli')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {exc!r}')\n"
        "print('\\n'.join(failed))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", proc.stdout


VERBALIZER_NAME = re.compile(
    r"""(==|!=)\s*["'](embed|mlm)["']|["'](embed|mlm)["']\s*(==|!=)|verbalizer\w*\s*(:[^=\n]*)?=\s*["'](embed|mlm)["']"""
)


def test_no_module_outside_verbalizers_compares_verbalizer_names():
    """What a verbalizer can do is asked of its registry entry or scorer class, so that a third
    verbalizer is one module and one entry."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        if relative.startswith("rosprompt_cli/verbalizers/"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if VERBALIZER_NAME.search(line):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert found == []
    assert VERBALIZER_NAME.search('if chosen == "embed":') and VERBALIZER_NAME.search("verbalizer = 'mlm'")


TRAINING_IMPORT = re.compile(r"\s*(from rosprompt_cli import training|from rosprompt_cli\.training import|import rosprompt_cli\.training)")


def test_verbalizers_never_import_the_training_loop():
    """The layers point one way: training.py uses verbalizers/, whose training heads take a
    HeadConfig (what they use of the training configuration), so no module of verbalizers/
    imports training.py, not even for type checking."""
    found = [f"{path.relative_to(REPO).as_posix()}:{number}: {line.strip()}"
             for path in sorted((PACKAGE / "verbalizers").glob("*.py"))
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if TRAINING_IMPORT.match(line)]
    assert found == []
    assert TRAINING_IMPORT.match("    from rosprompt_cli.training import TrainConfig")  # what base.py had


TYPE_CHECKING_IMPORT = re.compile(r"^    from rosprompt_cli\.(\w+) import (.+)$", re.M)


def test_the_package_imports_its_names_on_first_use():
    """`import rosprompt_cli` loads no model code (torch, transformers, polars): each public name
    is imported from its module when first used. The names type checkers see (the TYPE_CHECKING
    block) are exactly those, each from the module it is loaded from."""
    import rosprompt_cli

    source = (PACKAGE / "__init__.py").read_text(encoding="utf-8")
    declared = {name.strip(): module for module, names in TYPE_CHECKING_IMPORT.findall(source)
                for name in names.split(",")}
    assert declared == rosprompt_cli._EXPORTS
    assert sorted(declared) == rosprompt_cli.__all__
    script = (
        "import sys, rosprompt_cli\n"
        "heavy = [m for m in ('torch', 'transformers', 'polars') if m in sys.modules]\n"
        "from rosprompt_cli import LabelSet, __version__\n"
        "print(heavy, LabelSet.__module__, __version__ == rosprompt_cli.__version__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["[]", "rosprompt_cli.labels", "True"], proc.stderr
    for name in rosprompt_cli.__all__:
        assert getattr(rosprompt_cli, name) is getattr(importlib.import_module(f"rosprompt_cli.{declared[name]}"), name)
    with pytest.raises(AttributeError, match="no attribute 'run_everything'"):
        rosprompt_cli.run_everything  # noqa: B018


def test_each_registry_entry_is_named_as_its_scorer_names_itself():
    """The registry names each verbalizer's module and classes as text (imported on first use),
    so a misspelt entry would only fail when used: every entry loads, under its scorer's name."""
    from rosprompt_cli.verbalizers import REGISTRY
    from rosprompt_cli.verbalizers.base import ScorerBase, TrainingHead

    assert list(REGISTRY) == ["mlm", "embed"]  # mlm first: --verbalizer auto prefers it where it suits
    for name, entry in REGISTRY.items():
        assert issubclass(entry.scorer_class, ScorerBase) and entry.scorer_class.verbalizer == name
        assert issubclass(entry.head, TrainingHead)
        assert entry.scorer_class.__module__ == entry.head.__module__ == f"rosprompt_cli.verbalizers.{entry.module}"
