"""A run's curves as a small JSON file, so another run's plot can show both (``symprop train
--history RUN.json`` writes one, ``--plot-with RUN.json`` draws it beside the new run).

The file holds what the plot needs and what a reader wants to know about the run: the net,
the data set, the optimiser and rate, and per epoch the training and validation loss and
accuracy, then the final test accuracy. It is read back with every field checked, so a
hand-edited or foreign file is one line naming the file and the field.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from symprop.symbolic.errors import SympropError

from .train import Config, Result, check_output_path, write_atomically

FORMAT = "symprop training history 1"
CURVES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
MAX_EPOCHS = 100_000


def run_label(spec: str, config: Config) -> str:
    """How a run is named in a plot's legend: its optimiser, rate and net."""
    return f"{config.optimizer} lr {config.lr:g}: {spec}"


def history_record(result: Result, dataset_name: str, config: Config) -> dict:
    return {"format": FORMAT, "label": run_label(result.net.SPEC, config), "spec": result.net.SPEC,
            "data": dataset_name, "optimizer": config.optimizer, "lr": config.lr,
            "epochs": [s.epoch for s in result.history],
            **{name: [_number(getattr(s, name)) for s in result.history] for name in CURVES},
            "test_accuracy": _number(result.test_accuracy)}


def _number(value: float):
    return None if value != value else float(value)  # JSON has no NaN: a missing validation part


def write_history(path, record: dict) -> Path:
    """Atomically, as --save writes weights (train.write_atomically)."""
    path = check_output_path(path, "--history", "history")
    write_atomically(path, "--history", lambda stream: stream.write(json.dumps(record, indent=1).encode("utf-8")))
    return path


def read_history(path) -> dict:
    """A history file, checked field by field."""
    where = f"--plot-with {path}"
    try:
        if not Path(path).is_file():
            raise SympropError(f"{where}: no such file (write one with symprop train --history FILE.json)")
        if Path(path).stat().st_size > 10_000_000:
            raise SympropError(f"{where}: larger than 10 MB; not a training history")
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad UTF-8 or JSON, a 5000-digit integer
        raise SympropError(f"{where}: not a training history ({type(exc).__name__}: {exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise SympropError(f"{where}: not a training history (field 'format' should be {FORMAT!r})")
    epochs = record.get("epochs")
    if (not isinstance(epochs, list) or not 1 <= len(epochs) <= MAX_EPOCHS
            or not all(isinstance(e, int) and not isinstance(e, bool) for e in epochs)):
        raise SympropError(f"{where}, field 'epochs': expected a list of epoch numbers")
    for name in CURVES:
        values = record.get(name)
        if (not isinstance(values, list) or len(values) != len(epochs)
                or not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
                           for v in values)):
            raise SympropError(f"{where}, field {name!r}: expected {len(epochs)} finite numbers (or null)")
    if not isinstance(record.get("label"), str):
        raise SympropError(f"{where}, field 'label': expected a text")
    test = record.get("test_accuracy")
    if test is not None and not (isinstance(test, (int, float)) and math.isfinite(test)):
        raise SympropError(f"{where}, field 'test_accuracy': expected a number")
    return record
