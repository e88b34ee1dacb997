"""Training curves and, for 2-D data, the decision boundary over the test points (seed 001).

Uses matplotlib's object API with the Agg canvas: no display, no global pyplot state.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from symprop.extras import need
from symprop.symbolic.errors import SympropError

from .datasets import Dataset
from .train import DTYPES, Config, Result, check_output_path, predict, write_atomically

CLASS_COLOURS = ("#B22222", "#87CEFA")   # seed 001's two moons colours


def plot_path(path: str | Path, inputs=()) -> Path:
    """Where --plot PATH writes: PATH itself, or PATH.png when PATH has no suffix (matplotlib
    adds one, so say it here and report the file actually written)."""
    path = Path(path)
    if not path.suffix and not path.is_dir():
        path = path.with_name(path.name + ".png")
    return check_output_path(path, "--plot", "picture", inputs)


def plot_training(path: str | Path, result: Result, dataset: Dataset, config: Config,
                  others: list[dict] = ()) -> Path:
    """Draw the curves into plot_path(path) and return that path. ``others``: earlier runs'
    histories (training/history.py), drawn dashed beside this run's curves. Labels come from
    history files and specs, so no text is read as mathtext ($...$ stays text)."""
    matplotlib = need("matplotlib", "--plot")
    with matplotlib.rc_context({"text.parse_math": False}):
        return _draw_training(path, result, dataset, config, others)


def _draw_training(path, result: Result, dataset: Dataset, config: Config, others) -> Path:
    FigureCanvasAgg = need("matplotlib.backends.backend_agg", "--plot").FigureCanvasAgg
    from matplotlib.figure import Figure

    path = plot_path(path)
    two_d = dataset.n_features == 2
    figure = Figure(figsize=(15 if two_d else 10, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3 if two_d else 2)
    epochs = [s.epoch for s in result.history]
    has_val = result.n_val > 0

    loss_axes, accuracy_axes = axes[0], axes[1]
    this = "" if not others else f"{config.optimizer} lr {config.lr:g}: "
    loss_axes.plot(epochs, [s.train_loss for s in result.history], marker=".", label=f"{this}train", color="C0")
    if has_val:
        loss_axes.plot(epochs, [s.val_loss for s in result.history], marker=".", label=f"{this}validation",
                       color="C1")
    per_character = ", nats per character" if dataset.name == "text" else ""
    loss_axes.set(xlabel="epoch", ylabel=f"loss ({result.net.LOSS}{per_character})", title="loss")
    accuracy_axes.plot(epochs, [s.train_accuracy for s in result.history], marker=".",
                       label=f"{this}train", color="C0")
    if has_val:
        accuracy_axes.plot(epochs, [s.val_accuracy for s in result.history], marker=".",
                           label=f"{this}validation", color="C1")
    if result.n_test:  # the text data set has a validation part only
        accuracy_axes.axhline(result.test_accuracy, color="grey", linestyle="--",
                              label=f"{this}test (final) {result.test_accuracy:.4f}")
    for k, other in enumerate(others):
        _overlay(loss_axes, accuracy_axes, other, colours=(f"C{2 + 2 * k}", f"C{3 + 2 * k}"))
    measure = "token accuracy" if dataset.tokens else "accuracy"  # a class per token: tokens counted
    accuracy_axes.set(xlabel="epoch", ylabel=measure, title=measure)
    for ax in (loss_axes, accuracy_axes):
        ax.legend(fontsize="small" if others else None)
    if two_d:
        _decision_boundary(axes[2], result, dataset, config)
    decay = f" x {config.lr_decay:g} per epoch" if config.lr_decay != 1 else ""
    title = (f"{dataset.name}: {result.net.SPEC}\n({config.optimizer}, lr {config.lr:g}{decay}, "
             f"batch {config.batch_size}, seed {config.seed})")
    for other in others:
        title += f"\ndashed: {other['label']}"
    figure.suptitle(title, fontsize=10 if others else None)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in figure.canvas.get_supported_filetypes():
        raise SympropError(f"--plot {path}: matplotlib cannot write .{fmt} files; end the name in .png, .svg or .pdf")
    # into a temporary file renamed over path: a full disk leaves an older plot as it was
    write_atomically(path, "--plot", lambda stream: figure.savefig(stream, format=fmt, dpi=100))
    return path


def _overlay(loss_axes, accuracy_axes, other: dict, colours) -> None:
    """An earlier run's curves, dashed, labelled with its optimiser (the title names its net)."""
    name = other["label"].split(":")[0]
    for axes, curve, kind, colour in ((loss_axes, "train_loss", "train", colours[0]),
                                      (loss_axes, "val_loss", "validation", colours[1]),
                                      (accuracy_axes, "train_accuracy", "train", colours[0]),
                                      (accuracy_axes, "val_accuracy", "validation", colours[1])):
        points = [(e, v) for e, v in zip(other["epochs"], other[curve]) if v is not None]
        if points:
            axes.plot(*zip(*points), linestyle="--", marker=".", color=colour, label=f"{name}: {kind}")
    if other.get("test_accuracy") is not None:
        accuracy_axes.axhline(other["test_accuracy"], color="grey", linestyle=":",
                              label=f"{name}: test (final) {other['test_accuracy']:.4f}")


def _decision_boundary(axes, result: Result, dataset: Dataset, config: Config) -> None:
    """Predicted class over a grid spanning the test points, with the test points on top."""
    from matplotlib.colors import ListedColormap

    x, y = dataset.x_test, dataset.y_test
    low, high = x.min(axis=0), x.max(axis=0)
    margin = 0.1 * (high - low)
    g0, g1 = np.meshgrid(np.linspace(low[0] - margin[0], high[0] + margin[0], 300),
                         np.linspace(low[1] - margin[1], high[1] + margin[1], 300))
    grid = np.column_stack([g0.ravel(), g1.ravel()])
    classes = predict(result.net, result.params, result.task, result.scaling, grid,
                      DTYPES[config.dtype]).reshape(g0.shape)
    colours = ListedColormap(CLASS_COLOURS if dataset.n_classes == 2 else
                             [f"C{i}" for i in range(dataset.n_classes)])
    axes.contourf(g0, g1, classes, levels=np.arange(dataset.n_classes + 1) - 0.5, cmap=colours,
                  alpha=0.3)
    axes.scatter(x[:, 0], x[:, 1], c=y, cmap=colours, edgecolors="k", s=12,
                 vmin=-0.5, vmax=dataset.n_classes - 0.5)
    axes.set(xlabel="x1", ylabel="x2",
             title=f"decision boundary, test points (accuracy {result.test_accuracy:.4f})")
