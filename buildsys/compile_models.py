"""What the compiled build compiles, and how: one place for setup.py and for bench/compiled.py's copies.

The test that holds the compiled build to the source's answers builds its
copy with these same modules and flags, so it checks what an install ships.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

MYPY_FLAGS = ("--follow-imports=silent", "--ignore-missing-imports")
"""Only the models are type-checked: the modules they are imported beside are followed silently (a
build environment has mypy, not the rest of the dependencies)."""

SAME_ARITHMETIC = "-ffp-contract=off"
"""No fused multiply-adds: where the CPU has them (aarch64), C compilers fuse ``a * b + c`` into one rounding
by default, and the compiled models would then differ from the source in the last bit, and so in records."""


def compiled_modules(root: Path) -> list[str]:
    """The source files compiled, relative to ``root``: ``[tool.spendwatch] compiled`` in pyproject.toml."""
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["spendwatch"]["compiled"]
    return sorted(str(path.relative_to(root)) for pattern in patterns for path in root.glob(pattern))


def cflags() -> str:
    """``CFLAGS`` for the C compiler: the caller's, and :data:`SAME_ARITHMETIC`."""
    return f"{os.environ.get('CFLAGS', '')} {SAME_ARITHMETIC}".strip()
