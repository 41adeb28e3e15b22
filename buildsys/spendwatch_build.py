"""The build backend: setuptools, fetching mypy only for a build that compiles the models.

``SPENDWATCH_COMPILE=1 pip install .`` compiles the detection models with
mypyc (see setup.py). Every other install is pure Python and needs neither a
C compiler nor mypy, so mypy is only asked for when it will be used.
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the rest of PEP 517 and PEP 660, as setuptools has it)

COMPILE = "SPENDWATCH_COMPILE"
MYPY = "mypy>=1.10"


def compiling() -> bool:
    return os.environ.get(COMPILE, "") == "1"


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    if not compiling():
        return list(_setuptools.get_requires_for_build_wheel(config_settings))
    # setuptools runs setup.py to find what it needs; mypy is not there yet, so ask without compiling.
    os.environ[COMPILE] = "0"
    try:
        return [*_setuptools.get_requires_for_build_wheel(config_settings), MYPY]
    finally:
        os.environ[COMPILE] = "1"


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    if compiling():
        raise RuntimeError(
            f"{COMPILE}=1 compiles the models into an installed package; an editable install would put the "
            "compiled modules beside the source, where they hide every later edit of it. "
            f"Install with `pip install .`, or unset {COMPILE} for an editable install."
        )
    return list(_setuptools.get_requires_for_build_editable(config_settings))
