"""Write a simulation to disk: the events as JSONL (gzip when the name ends in .gz), the truth as JSON.

A gzip header normally carries the file name and the time of writing; both
are left out so that the same seed gives the same bytes on disk too.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import BinaryIO

import orjson

from detector.simulate.simulation import Simulation

BATCH_LINES = 16_384
GZIP_LEVEL = 3  # most of level 9's size at a fraction of its time


def write_simulation(sim: Simulation, out: Path, truth_path: Path | None = None) -> int:
    """Write ``sim`` to ``out`` (and its ground truth to ``truth_path``); returns the events written.

    >>> import tempfile
    >>> from detector.simulate.simulation import simulate
    >>> from detector.simulate.world import World
    >>> sim = simulate(days=1, world=World.default().only(feature="seo-audit"))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     written = write_simulation(sim, Path(tmp) / "events.jsonl.gz", Path(tmp) / "truth.json")
    >>> written == len(sim)
    True
    """
    out = Path(out)
    written = 0
    with out.open("wb") as raw:
        sink: BinaryIO = (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0)
            if out.name.endswith(".gz")
            else raw
        )
        with sink:
            batch: list[bytes] = []
            for line in sim.lines():
                batch.append(line)
                if len(batch) == BATCH_LINES:
                    sink.write(b"".join(batch))
                    written += len(batch)
                    batch.clear()
            sink.write(b"".join(batch))
            written += len(batch)
    if truth_path is not None:
        Path(truth_path).write_bytes(orjson.dumps(sim.truth(), option=orjson.OPT_INDENT_2) + b"\n")
    return written
