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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "buildsys"))
from compile_models import MYPY_FLAGS, cflags, compiled_modules  # noqa: E402  (what setup.py compiles, and how)


def compiled_copy(dest: Path, root: Path = ROOT) -> Path:
    """Copy ``detector`` into ``dest`` and compile its models there; ``dest`` is what goes on ``PYTHONPATH``.

    Raises ``RuntimeError`` with mypyc's output when the build fails (a type
    error in a model, or no C compiler).
    """
    shutil.copytree(root / "detector", dest / "detector", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    done = subprocess.run([sys.executable, "-m", "mypyc", *MYPY_FLAGS, *compiled_modules(root)], cwd=dest,
                          env={**os.environ, "CFLAGS": cflags()}, capture_output=True, text=True, check=False)
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
