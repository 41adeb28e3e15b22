"""Small integer ids for everything repeated across millions of events.

Columns hold a series number and a request-id prefix number instead of
strings; the catalog turns them back into the event's fields when it is
written. Ids are handed out in order of first use, which is deterministic
because the world is walked in a fixed order.
"""

from __future__ import annotations

import numpy as np

from detector.simulate.world import MODEL_PROFILES, Feature


class Catalog:
    """Numbered llm series (feature × model) and request-id prefixes.

    >>> from detector.simulate.world import World
    >>> cat = Catalog()
    >>> feature = World.default().features[0]
    >>> cat.series_id(feature, "gpt-4o-mini"), cat.series_id(feature, "gpt-4o"), cat.series_id(feature, "gpt-4o-mini")
    (0, 1, 0)
    >>> cat.head(1)["model"], cat.prefix_id("r7-abc-"), cat.prefixes
    ('gpt-4o', 0, ['r7-abc-'])
    """

    def __init__(self) -> None:
        self.series: list[tuple[Feature, str]] = []
        self.prefixes: list[str] = []
        self._series_ids: dict[tuple[str, str], int] = {}
        self._prefix_ids: dict[str, int] = {}

    def series_id(self, feature: Feature, model: str) -> int:
        key = (feature.key, model)
        found = self._series_ids.get(key)
        if found is None:
            found = self._series_ids[key] = len(self.series)
            self.series.append((feature, model))
        return found

    def prefix_id(self, prefix: str) -> int:
        found = self._prefix_ids.get(prefix)
        if found is None:
            found = self._prefix_ids[prefix] = len(self.prefixes)
            self.prefixes.append(prefix)
        return found

    def labels(self, series: int) -> dict[str, str]:
        feature, model = self.series[series]
        return feature.labels(model)

    def head(self, series: int) -> dict[str, str]:
        """The fixed fields of an event of this series, in the order events carry them."""
        feature, model = self.series[series]
        head = {"model": model, "provider": MODEL_PROFILES[model][0], "team": feature.team}
        if feature.product is not None:
            head["product"] = feature.product
        head["feature"] = feature.feature
        head["category"] = feature.category
        return head

    def matching(self, target: dict[str, str]) -> np.ndarray:
        """Per series id: does the series carry every label of ``target``?"""
        items = target.items()
        return np.array([items <= self.labels(s).items() for s in range(len(self.series))], dtype=bool)

    def profile(self) -> tuple[np.ndarray, np.ndarray]:
        """Per series id: time to first token (ms) and ms per output token of its model."""
        ttft = np.array([MODEL_PROFILES[model][1] for _, model in self.series])
        per_token = np.array([MODEL_PROFILES[model][2] for _, model in self.series])
        return ttft, per_token
