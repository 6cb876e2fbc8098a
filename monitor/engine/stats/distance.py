"""Declaring a distance test.

The distance tests but Hellinger (PSI, KL, Jensen-Shannon, TVD, Wasserstein,
energy) are declared alike: drift when the statistic is at least 0.1
(Evidently's default), and not symmetric, because the norm or the
histogram-or-per-value binning choice looks at the reference only.

>>> from monitor.engine.stats.wasserstein import wasserstein_numerical
>>> test = distance_test("example", "an example", wasserstein_numerical)
>>> test.kind.value, test.default_threshold, test.symmetric, test.supports_categorical
('distance', 0.1, False, False)
"""

from __future__ import annotations

from monitor.engine.stats.base import CategoricalFn, NumericalFn, StatTest, TestKind


def distance_test(
    name: str,
    description: str,
    numerical: NumericalFn | None,
    categorical: CategoricalFn | None = None,
) -> StatTest:
    """A not-symmetric distance test with the default threshold 0.1 (not registered)."""
    return StatTest(
        name=name,
        kind=TestKind.DISTANCE,
        default_threshold=0.1,
        symmetric=False,
        description=description,
        numerical=numerical,
        categorical=categorical,
    )
