"""Opening event files: plain, gzip or stdin, as an iterator of raw lines.

Kept apart from the replay loop so that loop never touches a file, and so
every command opens inputs the same way, with the same error when it cannot.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from detector.errors import InputError


class LineSource:
    """Raw lines of an events file, and how far through the file we are."""

    def __init__(self, raw: BinaryIO, stream: BinaryIO, total_bytes: int | None) -> None:
        self._raw, self._stream, self.total_bytes = raw, stream, total_bytes

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._stream)

    def position(self) -> int:
        """Bytes of the underlying file consumed so far (compressed bytes for .gz)."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0


@contextmanager
def open_events(path: str) -> Iterator[LineSource]:
    """Open ``path`` (``-`` for stdin, ``.gz`` decompressed) for reading lines.

    Raises InputError, with what to check, when the file cannot be opened.
    """
    if path == "-":
        yield LineSource(sys.stdin.buffer, sys.stdin.buffer, None)
        return
    p = Path(path)
    try:
        raw = p.open("rb")
    except FileNotFoundError:
        raise InputError("no such file (check the path, or use - for stdin)", path=path) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a JSONL file of events", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror}", path=path) from exc
    with raw:
        size = p.stat().st_size
        if path.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                yield LineSource(raw, stream, size)  # type: ignore[arg-type]
        else:
            yield LineSource(raw, raw, size)
