"""Stand-in for ``lrlab.lab.contract`` (being written by another branch), exactly as the data
contract states it, so the report, statistics and sequential code are written against it now.

At merge: replace ``lrlab.lab._contract_standin`` by ``lrlab.lab.contract`` in the imports of
``report.py``, ``sequential.py`` and the tests, and delete this file.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field


class TrialStatus(str, enum.Enum):
    DONE = "done"
    DIVERGED = "diverged"
    FAILED = "failed"


FINISHED = frozenset({TrialStatus.DONE, TrialStatus.DIVERGED})


@dataclass(frozen=True)
class Objective:
    name: str
    mode: str  # "min" or "max"

    def better(self, a: float, b: float) -> bool:
        """``a`` strictly better than ``b`` in this objective's direction."""
        return a < b if self.mode == "min" else a > b


@dataclass(frozen=True)
class StoredTrial:
    schedule: str
    seed: int
    key: str
    spec: dict
    status: TrialStatus
    error: str | None
    wall_time: float | None
    epochs: list[int]
    metrics: dict[str, list[float]]
    final: dict[str, float] = field(default_factory=dict)

    def value(self, objective: Objective) -> float:
        if objective.name in self.final:
            return float(self.final[objective.name])
        finite = [v for v in self.metrics.get(objective.name, []) if math.isfinite(v)]
        return finite[-1] if finite else math.nan
