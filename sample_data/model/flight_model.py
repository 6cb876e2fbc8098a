"""The sample flight-delay model: preprocessing, network, weights file and ``Predictor``.

Everything the model needs besides its weights lives in a JSON spec (``flight_delay.json``):
the feature lists, the reference statistics used to standardize and impute the numerical
features, the category levels, the network shape and the sha256 of the weights file.

The weights file (``flight_delay.pt``) is written in a small format of our own so that it
is byte-identical for identical weights, whatever the torch version: one magic line, one
JSON header line (tensor names and shapes, in a fixed order), then the raw little-endian
float32 values of every tensor, back to back.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

NUMERICAL = ["dep_time", "sched_dep_time", "dep_delay", "sched_arr_time", "distance", "hour", "minute"]
CATEGORICAL = ["carrier", "origin", "dest"]
FEATURES = NUMERICAL + CATEGORICAL
# Clock times coded HHMM become minutes after midnight before they are standardized.
HHMM = {"dep_time", "sched_dep_time", "sched_arr_time"}
OUTPUT = "late_probability"
TARGET = "arrived_late"
SPEC_FILE = "flight_delay.json"
WEIGHTS_FILE = "flight_delay.pt"
WEIGHTS_MAGIC = b"DRIFTLINE-FLIGHT-WEIGHTS 1\n"


class ModelFileError(RuntimeError):
    """The spec or the weights file is missing, unreadable or does not match."""


class InputError(ValueError):
    """A request's feature values cannot be fed to the model."""


# --- preprocessing ---------------------------------------------------------------------------


def hhmm_to_minutes(values: np.ndarray) -> np.ndarray:
    """HHMM clock readings (e.g. 1735) as minutes after midnight (1055); NaN stays NaN."""
    minutes: np.ndarray = np.floor(values / 100.0) * 60.0 + np.mod(values, 100.0)
    return minutes


def numeric_column(name: str, values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """One numerical feature as float64, None/NaN as NaN; InputError on anything else."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        return values.astype(np.float64)
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if v is None:
            out[i] = math.nan
        elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
            f = float(v)
            if math.isinf(f):
                raise InputError(f"feature {name!r}, row {i}: {v!r} is not a finite number")
            out[i] = f
        else:
            raise InputError(f"feature {name!r}, row {i}: expected a number or null, got {v!r:.40}")
    return out


def category_indices(name: str, values: Sequence[Any] | np.ndarray, levels: Sequence[str]) -> np.ndarray:
    """Indices of the levels; unseen levels and None/NaN go to the unknown bucket ``len(levels)``."""
    lookup = {level: i for i, level in enumerate(levels)}
    unknown = len(levels)
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        if isinstance(v, str):
            out[i] = lookup.get(v, unknown)
        elif v is None or (isinstance(v, float) and math.isnan(v)):
            out[i] = unknown
        else:
            raise InputError(f"feature {name!r}, row {i}: expected a string or null, got {v!r:.40}")
    return out


def fit_preprocessing(columns: Mapping[str, Any], min_count: int = 10) -> dict[str, Any]:
    """Reference statistics for :func:`encode`: mean/std/median per numerical feature (of the
    non-missing values, after the HHMM transform) and the category levels seen at least
    ``min_count`` times (rarer ones are trained as the unknown bucket)."""
    numerical: dict[str, Any] = {}
    for name in NUMERICAL:
        v = numeric_column(name, columns[name])
        if name in HHMM:
            v = hhmm_to_minutes(v)
        v = v[~np.isnan(v)]
        numerical[name] = {"transform": "hhmm_to_minutes" if name in HHMM else "identity",
                           "mean": float(v.mean()), "std": float(v.std()) or 1.0,
                           "median": float(np.median(v))}
    categorical: dict[str, Any] = {}
    for name in CATEGORICAL:
        vals, counts = np.unique(np.asarray([str(x) for x in columns[name]]), return_counts=True)
        categorical[name] = {"levels": sorted(str(v) for v, c in zip(vals, counts, strict=True)
                                              if c >= min_count)}
    return {"numerical": numerical, "categorical": categorical}


def input_width(pre: Mapping[str, Any]) -> int:
    """Width of the encoded input: value and missing flag per number, one-hot plus unknown per category."""
    return 2 * len(NUMERICAL) + sum(len(c["levels"]) + 1 for c in pre["categorical"].values())


def column_count(columns: Mapping[str, Any]) -> int:
    """The common length of the feature columns; InputError if one is missing or lengths differ."""
    missing = [f for f in FEATURES if f not in columns]
    if missing:
        raise InputError(f"missing feature(s): {', '.join(missing)}")
    lengths = {f: len(columns[f]) for f in FEATURES}
    if len(set(lengths.values())) > 1:
        raise InputError(f"feature columns have different lengths: {lengths}")
    return lengths[FEATURES[0]]


def encode(pre: Mapping[str, Any], columns: Mapping[str, Any]) -> np.ndarray:
    """The model input matrix (float64, one row per flight) for columns of raw feature values."""
    n = column_count(columns)
    values, flags, onehots = [], [], []
    for name in NUMERICAL:
        stats = pre["numerical"][name]
        v = numeric_column(name, columns[name])
        if stats["transform"] == "hhmm_to_minutes":
            v = hhmm_to_minutes(v)
        missing = np.isnan(v)
        values.append((np.where(missing, stats["median"], v) - stats["mean"]) / stats["std"])
        flags.append(missing.astype(np.float64))
    for name in CATEGORICAL:
        levels = pre["categorical"][name]["levels"]
        onehot = np.zeros((n, len(levels) + 1), dtype=np.float64)
        onehot[np.arange(n), category_indices(name, columns[name], levels)] = 1.0
        onehots.append(onehot)
    return np.concatenate([np.stack(values + flags, axis=1), *onehots], axis=1)


# --- network and weights file ---------------------------------------------------------------


class FlightNet(nn.Module):
    """A small MLP (ReLU hidden layers) giving the logit of ``arrived_late``."""

    def __init__(self, n_inputs: int, hidden: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit: torch.Tensor = self.layers(x).squeeze(-1)
        return logit


def weights_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    """The weights file's content: magic, JSON header, raw little-endian float32 tensors."""
    names = list(state)
    arrays = [state[k].detach().cpu().to(torch.float32).numpy().astype("<f4") for k in names]
    header = {"dtype": "<f4", "tensors": [{"name": k, "shape": list(a.shape)} for k, a in zip(names, arrays,
                                                                                               strict=True)]}
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    return WEIGHTS_MAGIC + head + b"".join(a.tobytes(order="C") for a in arrays)


def parse_weights(data: bytes, where: str) -> dict[str, torch.Tensor]:
    """Tensors from :func:`weights_bytes` output; ModelFileError if the layout is wrong."""
    if not data.startswith(WEIGHTS_MAGIC):
        raise ModelFileError(f"{where} is not a flight-delay weights file (bad magic line)")
    end = data.find(b"\n", len(WEIGHTS_MAGIC))
    try:
        header = json.loads(data[len(WEIGHTS_MAGIC):end])
        offset, state = end + 1, {}
        for t in header["tensors"]:
            count = math.prod(t["shape"])
            arr = np.frombuffer(data, dtype="<f4", count=count, offset=offset).reshape(t["shape"])
            state[t["name"]] = torch.from_numpy(arr.astype(np.float32))
            offset += 4 * count
    except (ValueError, KeyError, TypeError) as e:
        raise ModelFileError(f"{where} has a malformed header or is truncated: {e}") from None
    if offset != len(data):
        raise ModelFileError(f"{where} has {len(data) - offset} unexpected trailing bytes")
    return state


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the predictor --------------------------------------------------------------------------


class Predictor:
    """The trained model, ready to answer: ``Predictor.load(model_dir).predict(rows)``."""

    def __init__(self, spec: dict[str, Any], net: FlightNet) -> None:
        self.spec = spec
        self.net = net.eval()
        self.features: list[str] = list(FEATURES)
        self.numerical: list[str] = list(NUMERICAL)
        self.categorical: list[str] = list(CATEGORICAL)
        self.output: str = spec["output"]
        self.sha256: str = spec["weights"]["sha256"]

    @classmethod
    def load(cls, model_dir: str | Path) -> Predictor:
        """Read the spec and the weights; ModelFileError (one line) if either is missing or the
        weights' sha256 is not the one recorded in the spec."""
        model_dir = Path(model_dir)
        spec_path = model_dir / SPEC_FILE
        try:
            spec = json.loads(spec_path.read_text())
            weights_name, expected = spec["weights"]["file"], spec["weights"]["sha256"]
        except FileNotFoundError:
            raise ModelFileError(f"model spec {spec_path} is missing") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelFileError(f"model spec {spec_path} is unreadable: {e!r}") from None
        weights_path = model_dir / weights_name
        try:
            data = weights_path.read_bytes()
        except FileNotFoundError:
            raise ModelFileError(f"weights file {weights_path} is missing") from None
        except OSError as e:
            raise ModelFileError(f"weights file {weights_path} is unreadable: {e.strerror}") from None
        actual = sha256_of(data)
        if actual != expected:
            raise ModelFileError(f"weights file {weights_path} has sha256 {actual}, but {spec_path} "
                                 f"records {expected} (corrupt or stale file: retrain or restore it)")
        net = FlightNet(spec["network"]["inputs"], spec["network"]["hidden"])
        try:
            net.load_state_dict(parse_weights(data, str(weights_path)), strict=True)
        except RuntimeError as e:
            raise ModelFileError(f"weights file {weights_path} does not fit the network in {spec_path}: "
                                 f"{str(e).splitlines()[0]}") from None
        return cls(spec, net)

    def predict_columns(self, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> list[float]:
        """``late_probability`` for columns of feature values (None/NaN = missing)."""
        x = encode(self.spec["preprocessing"], columns)
        if len(x) == 0:
            return []
        with torch.no_grad():
            p = torch.sigmoid(self.net(torch.from_numpy(x.astype(np.float32))))
        return [float(v) for v in p.numpy()]

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> list[float]:
        """``late_probability`` for rows given as ``{feature: value}`` dicts (None = missing)."""
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise InputError(f"row {i}: expected an object of feature values, got {type(row).__name__}")
            missing = [f for f in self.features if f not in row]
            if missing:
                raise InputError(f"row {i}: missing feature(s): {', '.join(missing)}")
        return self.predict_columns({f: [row[f] for row in rows] for f in self.features})
