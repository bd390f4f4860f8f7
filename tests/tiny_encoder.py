"""`cli` and `cli_process` on the tiny test encoder, for a test module whose every claim is about
files, bytes, exit codes, messages or engines: `cli = tiny_encoder.cli` there puts each train,
label and eval of the module on it (conftest.py: `tiny_cli`)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def cli(tiny_cli):
    return tiny_cli


@pytest.fixture(scope="module")
def cli_process(tiny_cli_process):
    return tiny_cli_process
