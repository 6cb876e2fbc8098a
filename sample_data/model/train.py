"""Train the sample flight-delay model on the January-March reference flights.

    python sample_data/model/train.py [--out DIR] [--seed N]

Writes ``flight_delay.pt`` (weights), ``flight_delay.json`` (spec, metrics, weights sha256)
and ``reference.parquet`` (every reference flight with the model's ``late_probability``)
into DIR, and prints the weights' sha256.  The run is reproducible: the same seed gives
byte-identical files (Adam on minibatches in a seeded order, deterministic algorithms, one thread,
float64).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# Conditional numerical reproducibility of MKL: the same floating-point results on any x86 CPU.
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import accuracy_score, roc_auc_score  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import flight_model as fm  # noqa: E402

FLIGHTS = HERE.parent / "flights"
DEFAULT_SEED = 20130101
HIDDEN = [32, 16]
EPOCHS = 10
BATCH_SIZE = 256
LEARNING_RATE = 0.003
WEIGHT_DECAY = 1e-4
HOLDOUT_FRACTION = 0.2


def columns_of(frame: pd.DataFrame) -> dict[str, Any]:
    """Feature columns as numpy arrays (float64 with NaN for numbers, objects for categories)."""
    cols: dict[str, Any] = {n: frame[n].astype("float64").to_numpy() for n in fm.NUMERICAL}
    cols.update({n: frame[n].astype(object).to_numpy() for n in fm.CATEGORICAL})
    return cols


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """ROC AUC and accuracy at 0.5 (scikit-learn), with the row count and the late rate."""
    return {"rows": len(y), "late_rate": round(float(y.mean()), 6),
            "roc_auc": round(float(roc_auc_score(y, p)), 6),
            "accuracy_at_0.5": round(float(accuracy_score(y, p >= 0.5)), 6)}


def fit(x: np.ndarray, y: np.ndarray, seed: int, rng: np.random.Generator) -> fm.FlightNet:
    """Adam on the logistic loss, in float64: a fixed number of epochs of minibatches, each
    epoch in an order drawn from the seeded ``rng``."""
    torch.manual_seed(seed)
    net = fm.FlightNet(x.shape[1], HIDDEN).to(torch.float64)
    opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float64))
    net.train()
    for _ in range(EPOCHS):
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            opt.zero_grad(set_to_none=True)
            loss_fn(net(xt[batch]), yt[batch]).backward()
            opt.step()
    return net


def train(out: Path, seed: int) -> dict[str, Any]:
    """Train, write the three files into ``out`` and return the spec."""
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    reference = pd.read_parquet(FLIGHTS / "reference.parquet")
    labelled = reference[reference[fm.TARGET].notna()].reset_index(drop=True)
    y_all = labelled[fm.TARGET].astype("int64").to_numpy()
    order = rng.permutation(len(labelled))
    n_hold = int(round(HOLDOUT_FRACTION * len(labelled)))
    hold, tr = np.sort(order[:n_hold]), np.sort(order[n_hold:])

    pre = fm.fit_preprocessing(columns_of(reference))
    x_all = fm.encode(pre, columns_of(labelled))
    net = fit(x_all[tr], y_all[tr], seed, rng)

    out.mkdir(parents=True, exist_ok=True)
    data = fm.weights_bytes(net.state_dict())
    (out / fm.WEIGHTS_FILE).write_bytes(data)
    spec: dict[str, Any] = {
        "format": "driftline-flight-delay/1", "model_name": "flight-delay",
        "features": {"numerical": fm.NUMERICAL, "categorical": fm.CATEGORICAL},
        "output": fm.OUTPUT, "target": fm.TARGET, "preprocessing": pre,
        "network": {"inputs": fm.input_width(pre), "hidden": HIDDEN, "activation": "relu",
                    "output": "sigmoid(logit)"},
        "weights": {"file": fm.WEIGHTS_FILE, "sha256": fm.sha256_of(data), "bytes": len(data)},
        "training": {"seed": seed, "data": "sample_data/flights/reference.parquet (labelled rows)",
                     "holdout_fraction": HOLDOUT_FRACTION, "epochs": EPOCHS, "optimizer": "adam",
                     "batch_size": BATCH_SIZE,
                     "learning_rate": LEARNING_RATE, "weight_decay": WEIGHT_DECAY, "dtype": "float64",
                     "saved_dtype": "float32"},
    }
    (out / fm.SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")

    # Score with the saved float32 weights, exactly as the server will.
    predictor = fm.Predictor.load(out)
    p_ref = np.asarray(predictor.predict_columns(columns_of(reference)), dtype=np.float64)
    p_lab = p_ref[reference[fm.TARGET].notna().to_numpy()]
    spec["metrics"] = {"train": metrics(y_all[tr], p_lab[tr]), "holdout": metrics(y_all[hold], p_lab[hold]),
                       "reference": metrics(y_all, p_lab)}
    current_path = FLIGHTS / "current.parquet"
    if current_path.exists():
        current = pd.read_parquet(current_path)
        current = current[current[fm.TARGET].notna()]
        p_cur = np.asarray(predictor.predict_columns(columns_of(current)), dtype=np.float64)
        spec["metrics"]["current_july"] = metrics(current[fm.TARGET].astype("int64").to_numpy(), p_cur)
    (out / fm.SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")

    profile = reference[fm.FEATURES + [fm.TARGET]].copy()
    profile[fm.OUTPUT] = p_ref.astype(np.float32)
    profile.to_parquet(out / "reference.parquet", index=False)
    return spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the sample flight-delay model (reproducibly).")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default: %(default)s)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    spec = train(args.out, args.seed)
    m = spec["metrics"]
    print(f"trained in {time.perf_counter() - t0:.1f} s; reference ROC AUC {m['reference']['roc_auc']:.4f}, "
          f"accuracy {m['reference']['accuracy_at_0.5']:.4f}; holdout ROC AUC {m['holdout']['roc_auc']:.4f}",
          file=sys.stderr)
    print(spec["weights"]["sha256"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
