"""Reading a Prometheus endpoint the way Prometheus does: GET, then parse the
text format with prometheus_client's own parser."""

from __future__ import annotations

import math
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    # (sample name, sorted label pairs) → value
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    def value(self, name: str, **labels: str) -> float | None:
        """The sample's value, or None when the endpoint has no such series."""
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def count(self, name: str, **labels: str) -> float:
        """A counter or histogram count that may not exist yet (then 0)."""
        found = self.value(name, **labels)
        return 0.0 if found is None else found

    def is_nan(self, name: str, **labels: str) -> bool:
        found = self.value(name, **labels)
        return found is not None and math.isnan(found)

    def label_values(self, name: str, label: str) -> set[str]:
        return {
            dict(pairs)[label]
            for sample, pairs in self.samples
            if sample == name and label in dict(pairs)
        }


async def scrape(url: str) -> Scrape:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    return parse(text)


def parse(text: str) -> Scrape:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return Scrape(samples)


def metrics_url(port: int | None) -> str:
    assert port is not None, "the service serves no metrics"
    return f"http://127.0.0.1:{port}/metrics"
