"""Exports of the history store: :func:`write_focus_csv` (FOCUS CSV) and the ``export`` command group."""

from detector.export.focus import COLUMNS, focus_row, write_focus_csv

__all__ = ["COLUMNS", "focus_row", "write_focus_csv"]
