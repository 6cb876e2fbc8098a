"""Drift-detection settings that ``defaults`` and each model may set.

The window (:class:`WindowSpec`), when a dataset counts as drifted
(:class:`DatasetDriftRule`), the effect-size floors below which a change is
not drift (:class:`Materiality`) and how profiles are built
(:class:`ProfileSettings`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, Strict, model_serializer, model_validator

from monitor.config.durations import _is_number, _try_seconds, format_duration
from monitor.config.errors import _describe, _raise
from monitor.config.fields import PositiveDuration, PositiveInt, Probability, Slide
from monitor.config.strict import Loc, _Strict


class WindowSpec(_Strict):
    """A count window (``size`` events) or a time window (``duration``
    seconds); sliding every ``slide`` events/seconds, tumbling without it."""

    size: PositiveInt | None = Field(
        default=None, description="Events per window: a count window (give this or duration).")
    duration: PositiveDuration | None = Field(
        default=None, description="Length of a time window, in event time (give this or size).")
    slide: Slide | None = Field(
        default=None, description="Events (count window) or time (time window) between window starts, "
        "smaller than the window; unset: tumbling windows.")

    @classmethod
    def _cross_checks(cls, raw: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
        size, duration, slide = raw.get("size"), raw.get("duration"), raw.get("slide")
        if size is not None and duration is not None:
            yield (), "give either 'size' (a count window) or 'duration' (a time window), not both"
            return
        if size is None and duration is None:
            yield (), "give one of 'size' (events per window) or 'duration' (e.g. '5m')"
            return
        if slide is None:
            return
        if size is not None:
            if isinstance(slide, str | float):
                yield (
                    ("slide",),
                    (
                        f"a count window slides by a number of events, not a duration; got "
                        f"{_describe(slide)}"
                    ),
                )
            elif _is_number(slide) and _is_number(size) and slide >= size >= 1:
                yield (
                    ("slide",),
                    (
                        f"slide ({slide}) must be smaller than size ({size}); "
                        "omit slide for a tumbling window"
                    ),
                )
        else:
            window_s, slide_s = _try_seconds(duration), _try_seconds(slide)
            if window_s is not None and slide_s is not None and slide_s >= window_s > 0:
                yield (
                    ("slide",),
                    (
                        f"slide ({format_duration(slide_s)}) must be shorter than duration "
                        f"({format_duration(window_s)}); omit slide for a tumbling window"
                    ),
                )

    @property
    def kind(self) -> Literal["count", "time"]:
        return "count" if self.size is not None else "time"

    @property
    def tumbling(self) -> bool:
        return self.slide is None

    @property
    def slide_events(self) -> int | None:
        """Events between window starts for a sliding count window."""
        return int(self.slide) if self.kind == "count" and self.slide is not None else None

    @property
    def slide_seconds(self) -> float | None:
        """Seconds between window starts for a sliding time window."""
        return float(self.slide) if self.kind == "time" and self.slide is not None else None


class DatasetDriftRule(_Strict):
    """When a dataset counts as drifted: ``any`` drifted feature (``share`` is
    None), or at least ``share`` of the features.  YAML: ``any`` or
    ``{share: 0.3}``."""

    share: Annotated[float, Strict(), Field(gt=0, le=1)] | None = Field(
        default=None, description="Least share of the features that must drift for the dataset to count "
        "as drifted; unset (YAML `any`): any one drifted feature.")

    @model_validator(mode="before")
    @classmethod
    def _from_any(cls, data: Any) -> Any:
        if data == "any":
            return {}
        if isinstance(data, Mapping | DatasetDriftRule):
            return data
        return _raise(f"expected 'any' or a mapping like {{share: 0.3}}; got {_describe(data)}")

    @property
    def mode(self) -> Literal["any", "share"]:
        return "any" if self.share is None else "share"

    def decide(self, drifted: int, total: int) -> bool:
        """Whether ``drifted`` of ``total`` features drifting is dataset drift."""
        if total <= 0 or drifted <= 0:
            return False
        return self.share is None or drifted / total >= self.share

    @model_serializer
    def _dump(self) -> str | dict[str, float]:
        return "any" if self.share is None else {"share": self.share}


class Materiality(_Strict):
    """Effect-size floors below which a statistically significant change is
    not reported as drift: normed Wasserstein distance (numerical), total
    variation distance (categorical) and absolute change in missing share."""

    numerical: Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)] = Field(
        default=0.1, description="Least normed Wasserstein distance for a significant change of a "
        "numerical feature to count as drift.")
    categorical: Probability = Field(
        default=0.05, description="Least total variation distance for a significant change of a "
        "categorical feature to count as drift.")
    missing_share: Probability = Field(
        default=0.01,
        description="Least absolute change in the share of missing values that counts as drift.")


class ProfileSettings(_Strict):
    """How reference and window profiles are built: keep values exactly up to
    ``exact_cap`` then switch to a KLL sketch of parameter ``sketch_k``; keep
    at most ``max_categories`` categories per feature (the rest pool as other)."""

    exact_cap: Annotated[int, Strict(), Field(ge=0)] = Field(
        default=100_000, description="Values of a numerical feature kept exactly before the profile "
        "switches to a KLL sketch.")
    sketch_k: Annotated[int, Strict(), Field(ge=8, le=65535)] = Field(
        default=1024,
        description="The KLL sketch's parameter k: larger is more accurate and takes more memory.")
    max_categories: PositiveInt = Field(
        default=200, description="Categories kept per categorical feature; the rarer ones pool as 'other'.")
