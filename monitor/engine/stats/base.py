"""What every statistical test is: a name, a kind, a default threshold and
pure functions over numpy data.

A test scores a numerical pair of samples, a categorical pair of count
vectors, or both.  ``p_value`` tests drift when ``p < threshold``;
``distance`` tests drift when ``statistic >= threshold``.  Tests register
themselves by short name in :mod:`monitor.engine.stats.registry` when their module is
imported, in the style of Evidently's stattests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from monitor.engine.stats.samples import NumericSample

CountArray = NDArray[np.float64]


class TestKind(StrEnum):
    """How a test's output is read."""

    P_VALUE = "p_value"
    DISTANCE = "distance"


@dataclass(frozen=True)
class Score:
    """The raw output of a test: a statistic and, for p-value tests, a p-value."""

    statistic: float
    p_value: float | None = None


NumericalFn = Callable[[NumericSample, NumericSample], Score]
CategoricalFn = Callable[[CountArray, CountArray], Score]


@dataclass(frozen=True)
class StatTest:
    """A registered two-sample test.

    ``numerical`` takes (reference, current) samples; ``categorical`` takes
    (reference, current) count vectors aligned on the same categories.
    ``symmetric`` says whether swapping reference and current leaves the
    statistic unchanged.
    """

    __test__ = False  # not a pytest class, despite the name

    name: str
    kind: TestKind
    default_threshold: float
    symmetric: bool
    description: str
    numerical: NumericalFn | None = None
    categorical: CategoricalFn | None = None

    def decide(self, score: Score, threshold: float | None = None) -> bool:
        """The test's own verdict, before any multiple-testing correction."""
        limit = self.default_threshold if threshold is None else threshold
        if self.kind is TestKind.P_VALUE:
            return score.p_value is not None and not math.isnan(score.p_value) and score.p_value < limit
        return not math.isnan(score.statistic) and score.statistic >= limit

    @property
    def supports_numerical(self) -> bool:
        return self.numerical is not None

    @property
    def supports_categorical(self) -> bool:
        return self.categorical is not None


NO_DATA = Score(float("nan"), None)
