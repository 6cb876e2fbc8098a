"""Reference profiles: everything the drift tests need, without the raw data.

A profile holds one summary per feature:

* numerical: the exact sorted sample up to ``exact_cap`` values, beyond that
  an Apache DataSketches KLL quantile sketch (mergeable, with a stated rank
  error) summarised as a quantile grid; plus count, missing, non-finite,
  min, max, mean and standard deviation;
* categorical and boolean: category counts up to ``max_categories`` distinct
  values (the rest fold into an "other" count), plus the missing count.

Summaries are built by accumulators that take data in chunks and merge with
``+``; the streaming windows use the same accumulators, so a window and a
reference are the same kind of object and one is compared with the other.

On disk a profile is one ``.npz`` file (numpy's zip of arrays, loaded with
``allow_pickle=False``) with a JSON header; see :mod:`monitor.batch.profile_io`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from datasketches import kll_doubles_sketch
from numpy.typing import NDArray

from monitor.engine.moments import merge_moments
from monitor.engine.stats.samples import NumericSample

FeatureType = Literal["numerical", "categorical", "boolean"]
OTHER = "__other__"

#: default cap on exact values per numerical feature before sketching
DEFAULT_EXACT_CAP = 100_000
#: default KLL accuracy parameter (rank error ~0.3% at k=1024)
DEFAULT_SKETCH_K = 1024
#: default cap on distinct categories kept per categorical feature
DEFAULT_MAX_CATEGORIES = 200
#: points in the quantile grid that stands for a sketched sample
GRID_POINTS = 4096


@dataclass(frozen=True)
class ProfileSettings:
    """How much a profile keeps.  Units: values, categories."""

    exact_cap: int | None = DEFAULT_EXACT_CAP  # None: always exact
    sketch_k: int = DEFAULT_SKETCH_K
    max_categories: int = DEFAULT_MAX_CATEGORIES


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """Summary of one numerical feature."""

    sample: NumericSample
    missing: int
    nonfinite: int = 0  # +/-inf values, counted, kept out of the sample
    invalid: int = 0  # values that were not numbers at all
    minimum: float = math.nan
    maximum: float = math.nan
    mean: float = math.nan
    std: float = math.nan
    sketch: bytes | None = None  # serialized KLL sketch when not exact
    rank_error: float = 0.0  # the sketch's normalized rank error, 0 when exact
    type: FeatureType = "numerical"

    @property
    def count(self) -> int:
        return self.sample.n

    @property
    def rows(self) -> int:
        return self.sample.n + self.missing + self.nonfinite + self.invalid

    @property
    def exact(self) -> bool:
        return self.sample.exact

    @property
    def missing_share(self) -> float:
        return self.missing / self.rows if self.rows else math.nan


@dataclass(frozen=True, eq=False)
class CategoricalProfile:
    """Summary of one categorical or boolean feature."""

    categories: tuple[str, ...]
    counts: NDArray[np.int64]
    missing: int
    other: int = 0  # values beyond the category cap
    invalid: int = 0
    type: FeatureType = "categorical"

    @property
    def count(self) -> int:
        return int(self.counts.sum()) + self.other

    @property
    def rows(self) -> int:
        return self.count + self.missing + self.invalid

    @property
    def missing_share(self) -> float:
        return self.missing / self.rows if self.rows else math.nan

    def as_dict(self) -> dict[str, int]:
        out = {c: int(n) for c, n in zip(self.categories, self.counts, strict=True)}
        if self.other:
            out[OTHER] = self.other
        return out


FeatureProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True, eq=False)
class Profile:
    """Summaries of every feature of one dataset or window."""

    features: Mapping[str, FeatureProfile]
    rows: int
    settings: ProfileSettings = field(default_factory=ProfileSettings)
    columns: tuple[str, ...] = ()  # every column seen, monitored or not
    source: str = ""
    created_at: str = ""  # ISO 8601, set by whoever builds it (time is injected)

    def __add__(self, other: Profile) -> Profile:
        return merge_profiles(self, other)


# --------------------------------------------------------------------------
# accumulators


class NumericAccumulator:
    """Collects a numerical feature in chunks with bounded memory.

    Exact up to ``exact_cap`` values, then a KLL sketch.  Moments use Chan's
    parallel update so chunking and merging give the same numbers.
    """

    def __init__(self, settings: ProfileSettings | None = None) -> None:
        self.settings = settings or ProfileSettings()
        self._chunks: list[NDArray[np.float64]] = []
        self._held = 0
        self._sketch: kll_doubles_sketch | None = None
        self.count = 0
        self.missing = 0
        self.nonfinite = 0
        self.invalid = 0
        self._mean = 0.0
        self._m2 = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf

    def update(self, values: NDArray[np.float64], *, invalid: int = 0) -> NumericAccumulator:
        """Add values (NaN means missing).  ``invalid`` counts rejected non-numbers."""
        self.invalid += invalid
        # Sorting first does most of the work once: numpy sorts NaN last and
        # -inf/+inf to the ends, so the finite values are one slice, min and
        # max are its ends, and the held chunk needs no sort at freeze time.
        ordered = np.sort(np.asarray(values, dtype=np.float64))
        end = int(np.searchsorted(ordered, np.nan, side="left"))
        lo = int(np.searchsorted(ordered[:end], -np.inf, side="right"))
        hi = int(np.searchsorted(ordered[:end], np.inf, side="left"))
        self.missing += ordered.size - end
        self.nonfinite += lo + (end - hi)
        finite = ordered[lo:hi]
        if finite.size == 0:
            return self
        mean = float(finite.sum()) / finite.size
        centred = finite - mean
        # square in place and sum: BLAS dot wakes its thread pool, which costs
        # more than the arithmetic at this size
        m2 = float(np.square(centred, out=centred).sum())
        self._add_moments(int(finite.size), mean, m2, float(finite[0]), float(finite[-1]))
        self._hold(finite)
        return self

    def _add_moments(self, n: int, mean: float, m2: float, lo: float, hi: float) -> None:
        self.count, self._mean, self._m2 = merge_moments(self.count, self._mean, self._m2, n, mean, m2)
        self.minimum = min(self.minimum, lo)
        self.maximum = max(self.maximum, hi)

    def _hold(self, arr: NDArray[np.float64]) -> None:
        cap = self.settings.exact_cap
        if self._sketch is not None:
            self._sketch.update(arr)
            return
        self._chunks.append(arr)  # sorted, owned: callers pass fresh arrays
        self._held += int(arr.size)
        if cap is not None and self._held > cap:
            self._sketch = kll_doubles_sketch(self.settings.sketch_k)
            for chunk in self._chunks:
                self._sketch.update(chunk)
            self._chunks = []
            self._held = 0

    def merge(self, other: NumericAccumulator) -> NumericAccumulator:
        """Fold ``other`` into this accumulator."""
        self.missing += other.missing
        self.nonfinite += other.nonfinite
        self.invalid += other.invalid
        if other.count:
            self._add_moments(other.count, other._mean, other._m2, other.minimum, other.maximum)
        if other._sketch is not None:
            if self._sketch is None:
                self._sketch = kll_doubles_sketch(self.settings.sketch_k)
                for chunk in self._chunks:
                    self._sketch.update(chunk)
                self._chunks, self._held = [], 0
            self._sketch.merge(other._sketch)
        else:
            for chunk in other._chunks:
                self._hold(chunk)
        return self

    def __add__(self, other: NumericAccumulator) -> NumericAccumulator:
        out = NumericAccumulator(self.settings)
        return out.merge(self).merge(other)

    @property
    def moments(self) -> tuple[float, float]:
        """(running mean, sum of squared deviations): the exact state behind mean and std,
        for checkpoints that must restore bit for bit."""
        return self._mean, self._m2

    def set_moments(self, mean: float, m2: float) -> None:
        """Restore what :attr:`moments` returned (checkpoint restore only)."""
        self._mean, self._m2 = float(mean), float(m2)

    @property
    def held_values(self) -> int:
        """Values held in memory: exact values, or the sketch's retained items."""
        return self._held if self._sketch is None else int(self._sketch.num_retained)

    def freeze(self) -> NumericProfile:
        if self._sketch is None:
            if len(self._chunks) == 1:
                data = self._chunks[0]  # already sorted
            elif self._chunks:
                # sorted runs: a stable (merge-based) sort joins them cheaply
                data = np.sort(np.concatenate(self._chunks), kind="stable")
            else:
                data = np.empty(0)
            sample = NumericSample(data, int(data.size), True)
            sketch, rank_error = None, 0.0
        else:
            sample = sample_from_sketch(self._sketch)
            sketch = bytes(self._sketch.serialize())
            rank_error = float(self._sketch.normalized_rank_error(False))
        return NumericProfile(
            sample=sample,
            missing=self.missing,
            nonfinite=self.nonfinite,
            invalid=self.invalid,
            minimum=self.minimum if self.count else math.nan,
            maximum=self.maximum if self.count else math.nan,
            mean=self._mean if self.count else math.nan,
            std=math.sqrt(self._m2 / self.count) if self.count else math.nan,
            sketch=sketch,
            rank_error=rank_error,
        )

    @classmethod
    def thaw(cls, profile: NumericProfile, settings: ProfileSettings) -> NumericAccumulator:
        """An accumulator holding what a profile holds (to merge profiles)."""
        acc = cls(settings)
        acc.missing, acc.nonfinite, acc.invalid = profile.missing, profile.nonfinite, profile.invalid
        if profile.count:
            acc._add_moments(profile.count, profile.mean, profile.std**2 * profile.count,
                             profile.minimum, profile.maximum)
        if profile.sketch is not None:
            acc._sketch = kll_doubles_sketch.deserialize(profile.sketch)
        elif profile.sample.size:
            acc._hold(profile.sample.values)
        return acc


def sample_from_sketch(sketch: kll_doubles_sketch) -> NumericSample:
    """An evenly spaced quantile grid standing for the sketch's ``n`` values."""
    n = int(sketch.n)
    points = min(GRID_POINTS, n)
    ranks = (np.arange(points) + 0.5) / points
    grid = np.asarray(sketch.get_quantiles(ranks), dtype=np.float64)
    return NumericSample.from_grid(grid, n)


class CategoricalAccumulator:
    """Category counts with a cap on distinct values; the rest count as "other"."""

    def __init__(self, settings: ProfileSettings | None = None, *,
                 feature_type: FeatureType = "categorical") -> None:
        self.settings = settings or ProfileSettings()
        self.feature_type = feature_type
        self._counts: Counter[str] = Counter()
        self.other = 0
        self.missing = 0
        self.invalid = 0

    def update(self, values: Iterable[object]) -> CategoricalAccumulator:
        """Add raw values; None and NaN count as missing."""
        counts: Counter[str] = Counter()
        for value in values:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                self.missing += 1
            else:
                counts[category_label(value)] += 1
        return self.update_counts(counts)

    def update_counts(self, counts: Mapping[str, int], *, missing: int = 0,
                      invalid: int = 0) -> CategoricalAccumulator:
        self.missing += missing
        self.invalid += invalid
        cap = self.settings.max_categories
        # most frequent first, so a capped batch keeps its top categories
        for key, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            if key == OTHER:
                self.other += int(n)
            elif key in self._counts or len(self._counts) < cap:
                self._counts[key] += int(n)
            else:
                self.other += int(n)
        return self

    def merge(self, other: CategoricalAccumulator) -> CategoricalAccumulator:
        self.update_counts(other._counts, missing=other.missing, invalid=other.invalid)
        self.other += other.other
        return self

    def __add__(self, other: CategoricalAccumulator) -> CategoricalAccumulator:
        out = CategoricalAccumulator(self.settings, feature_type=self.feature_type)
        return out.merge(self).merge(other)

    def freeze(self) -> CategoricalProfile:
        # most frequent first, ties by name: a stable, readable order
        items = sorted(self._counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return CategoricalProfile(
            categories=tuple(k for k, _ in items),
            counts=np.array([v for _, v in items], dtype=np.int64),
            missing=self.missing,
            other=self.other,
            invalid=self.invalid,
            type=self.feature_type,
        )

    @classmethod
    def thaw(cls, profile: CategoricalProfile, settings: ProfileSettings) -> CategoricalAccumulator:
        acc = cls(settings, feature_type=profile.type)
        acc.update_counts(profile.as_dict(), missing=profile.missing, invalid=profile.invalid)
        return acc


def category_label(value: object) -> str:
    """The string a category is known by (booleans and 0/1 flags as true/false)."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


Accumulator = NumericAccumulator | CategoricalAccumulator


def thaw(profile: FeatureProfile, settings: ProfileSettings) -> Accumulator:
    if isinstance(profile, NumericProfile):
        return NumericAccumulator.thaw(profile, settings)
    return CategoricalAccumulator.thaw(profile, settings)


def merge_profiles(left: Profile, right: Profile) -> Profile:
    """One profile of the union of two datasets' rows.

    Exact parts merge exactly (and turn into a sketch past the cap); sketched
    parts merge within the sketch's stated rank error.
    """
    settings = left.settings
    features: dict[str, FeatureProfile] = {}
    for name in dict.fromkeys([*left.features, *right.features]):
        a, b = left.features.get(name), right.features.get(name)
        if a is None or b is None:
            raise ValueError(f"cannot merge profiles: feature {name!r} is in only one of them")
        if type(a) is not type(b) or a.type != b.type:
            raise ValueError(f"cannot merge profiles: feature {name!r} has type {a.type} and {b.type}")
        acc = thaw(a, settings)
        if isinstance(acc, NumericAccumulator):
            assert isinstance(b, NumericProfile)
            acc.merge(NumericAccumulator.thaw(b, settings))
        else:
            assert isinstance(b, CategoricalProfile)
            acc.merge(CategoricalAccumulator.thaw(b, settings))
        features[name] = acc.freeze()
    columns = tuple(dict.fromkeys([*left.columns, *right.columns]))
    return replace(left, features=features, rows=left.rows + right.rows, columns=columns)
