"""Series identities: which labels make a series, and how they are written.

A series is a metric over one combination of labels. The key is a plain
tuple in the order of LLM_SERIES_LABELS, (team, feature, model), which the
engine builds inline on its hot path; the labels dict is built only when a
record needs it. Absent labels are left out of the dict, not written as
"None", so routing and matchers see only what the producer sent.
"""

from __future__ import annotations

LLM_SERIES_LABELS: tuple[str, ...] = ("team", "feature", "model")

SeriesKey = tuple[str | None, ...]


def labels_of(key: SeriesKey, names: tuple[str, ...] = LLM_SERIES_LABELS) -> dict[str, str]:
    """The labels dict of a series key, without the labels that are absent.

    >>> labels_of(('search', None, 'gpt-4o'))
    {'team': 'search', 'model': 'gpt-4o'}
    """
    return {name: value for name, value in zip(names, key, strict=True) if value is not None}
