"""The optional compiled build: ``SPENDWATCH_COMPILE=1 pip install .`` compiles the models with mypyc.

The models' per-minute arithmetic is the largest part of a replay's time;
the same source compiled by mypyc runs it faster with the same results
(tests/test_compiled_models.py holds a compiled replay to the same records
and state). Without the variable this adds nothing: the package is pure
Python and its metadata is all in pyproject.toml. The modules compiled are
listed there, under ``[tool.spendwatch] compiled``.
"""

import os
import tomllib
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
SAME_ARITHMETIC = "-ffp-contract=off"
"""No fused multiply-adds: where the CPU has them (aarch64), C compilers fuse ``a * b + c`` into one rounding
by default, and the compiled models would then differ from the source in the last bit, and so in records."""


def compiled_modules() -> list[str]:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["spendwatch"]["compiled"]
    return sorted(str(path.relative_to(ROOT)) for pattern in patterns for path in ROOT.glob(pattern))


def ext_modules() -> list[object]:
    if os.environ.get("SPENDWATCH_COMPILE", "") != "1":
        return []
    # mypy is in a compiling build's environment only (buildsys/spendwatch_build.py).
    from mypyc.build import mypycify

    # Only the models are type-checked here: the modules they are imported beside are followed silently
    # (the build environment has mypy, not the rest of the dependencies).
    flags = ["--follow-imports=silent", "--ignore-missing-imports"]
    os.environ["CFLAGS"] = f"{os.environ.get('CFLAGS', '')} {SAME_ARITHMETIC}".strip()
    return list(mypycify([*flags, *compiled_modules()], opt_level="3"))


setup(ext_modules=ext_modules())
