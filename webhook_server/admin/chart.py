"""The inbound-rate chart as SVG bars, computed here so the template only places them. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 240, 48


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    label: str  # "3 accepted, 14:00-15:00 UTC"


def bars(counts: Sequence[int], first_hour: int) -> list[Bar]:
    """One bar per hour; `first_hour` is the UTC hour the first bucket starts at."""
    if not counts:
        return []
    top = max(*counts, 1)
    step = WIDTH / len(counts)
    out = []
    for i, n in enumerate(counts):
        h = 0.0 if n == 0 else max(1.0, (HEIGHT - 2) * n / top)
        start = (first_hour + i) % 24
        out.append(Bar(round(i * step + 1, 2), round(HEIGHT - h, 2), round(step - 2, 2), round(h, 2), n,
                       f"{n} accepted, {start:02d}:00-{(start + 1) % 24:02d}:00 UTC"))
    return out
