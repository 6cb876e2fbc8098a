"""Pure two-sample statistical tests over numpy data, registered by name.

Importing this package imports every test module so the registry is full.
Only numpy and scipy are imported here; ``multivariate/`` alone adds torch.
"""

from monitor.engine.stats import (  # noqa: F401  (each registers itself)
    anderson,
    chisquare,
    cramervonmises,
    energy,
    hellinger,
    jensenshannon,
    kl,
    ks,
    psi,
    tvd,
    wasserstein,
    ztest,
)
from monitor.engine.stats.base import Score, StatTest, TestKind
from monitor.engine.stats.registry import all_tests, get, names
from monitor.engine.stats.samples import NumericSample, Pooled, pool

__all__ = [
    "NumericSample",
    "Pooled",
    "Score",
    "StatTest",
    "TestKind",
    "all_tests",
    "get",
    "names",
    "pool",
]
