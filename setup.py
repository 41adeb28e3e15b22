"""The optional compiled build: ``SPENDWATCH_COMPILE=1 pip install .`` compiles the models with mypyc.

The models' per-minute arithmetic is the largest part of a replay's time;
the same source compiled by mypyc runs it faster with the same results
(tests/test_compiled_models.py holds a compiled replay to the same records
and state). Without the variable this adds nothing: the package is pure
Python and its metadata is all in pyproject.toml. The modules compiled are
listed there, under ``[tool.spendwatch] compiled``.
"""

import os
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT / "buildsys"))
from compile_models import MYPY_FLAGS, cflags, compiled_modules  # noqa: E402  (beside this file, not installed)


def ext_modules() -> list[object]:
    if os.environ.get("SPENDWATCH_COMPILE", "") != "1":
        return []
    # mypy is in a compiling build's environment only (buildsys/spendwatch_build.py).
    from mypyc.build import mypycify

    os.environ["CFLAGS"] = cflags()
    return list(mypycify([*MYPY_FLAGS, *compiled_modules(ROOT)], opt_level="3"))


setup(ext_modules=ext_modules())
