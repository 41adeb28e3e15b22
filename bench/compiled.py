"""A copy of the ``detector`` package with its models compiled by mypyc, beside the source it came from.

``SPENDWATCH_COMPILE=1 pip install .`` builds the compiled models into an
installed package (setup.py). The benchmarks and the test that holds the
two builds to the same answers need both at once from one checkout, so this
builds the same modules (``[tool.spendwatch] compiled`` in pyproject.toml)
into a copy: put the returned directory first on ``PYTHONPATH`` and
``import detector`` loads the compiled models. Needs mypy and a C compiler.

    python -m bench.compiled DIR      # build it in DIR, e.g. to profile it
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def compiled_modules(root: Path = ROOT) -> list[str]:
    """The source files the compiled build compiles, relative to ``root``."""
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["spendwatch"]["compiled"]
    return sorted(str(path.relative_to(root)) for pattern in patterns for path in root.glob(pattern))


def compiled_copy(dest: Path, root: Path = ROOT) -> Path:
    """Copy ``detector`` into ``dest`` and compile its models there; ``dest`` is what goes on ``PYTHONPATH``.

    Raises ``RuntimeError`` with mypyc's output when the build fails (a type
    error in a model, or no C compiler).
    """
    shutil.copytree(root / "detector", dest / "detector", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    flags = ["--follow-imports=silent", "--ignore-missing-imports"]  # as setup.py builds them
    cflags = f"{os.environ.get('CFLAGS', '')} -ffp-contract=off".strip()  # setup.py's SAME_ARITHMETIC
    done = subprocess.run([sys.executable, "-m", "mypyc", *flags, *compiled_modules(root)], cwd=dest,
                          env={**os.environ, "CFLAGS": cflags}, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"mypyc could not compile the models:\n{done.stdout[-4000:]}{done.stderr[-4000:]}")
    return dest


def pythonpath(compiled: Path) -> str:
    """``PYTHONPATH`` for a process that should run the compiled copy (the checkout after it, for the rest)."""
    return os.pathsep.join([str(compiled), str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)


def start_dir(path: str) -> str:
    """Where a ``python -c``/``-m`` child given ``PYTHONPATH=path`` must start: those put their working
    directory first on ``sys.path``, and the checkout's own ``detector`` would hide the compiled one."""
    return path.split(os.pathsep)[0]


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) == 2 else 2)
    where = compiled_copy(Path(sys.argv[1]))
    print(f"compiled models in {where}; run with PYTHONPATH={pythonpath(where)}")
