"""Each package's public API is its sorted ``__all__``, and every name in it exists."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("package", ["detector", "detector.alerts", "detector.digest", "detector.export",
                                     "detector.history", "detector.notify", "detector.rules", "detector.simulate"])
def test_all_is_sorted_and_every_name_is_there(package):
    module = importlib.import_module(package)
    names = list(module.__all__)
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    missing = [name for name in names if not hasattr(module, name)]
    assert missing == []


def test_our_code_never_imports_kafka_or_asyncio():
    """detector/ stays a plain synchronous library (third-party packages may do as they like)."""
    import ast
    from pathlib import Path

    root = Path(importlib.import_module("detector").__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("faust", "aiokafka", "asyncio")]
    assert offenders == []
