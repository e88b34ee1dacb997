"""symprop train: train a network on digits, two moons, MNIST, a text or sequence reversal with the generated kernels."""
from __future__ import annotations

import argparse
import dataclasses
import math

from symprop.extras import require
from symprop.symbolic.errors import SympropError
from symprop.symbolic.steps import RULES, rule_named
from symprop.training.datasets import NAMES, load_dataset
from symprop.training.threads import MIN_STEP_FLOP
from symprop.training.train import (DTYPES, Config, Task, blas_threads_for, check_output_path, load_net, save_model,
                                    train, validation_count)

# per data set: the net and hyperparameters used when the command line does not say
DEFAULTS = {
    "digits": dict(net="affine(64,64) relu affine(64,10) softmax-cross-entropy",
                   epochs=30, batch_size=32, lr=0.2, lr_decay=0.95),
    "moons": dict(net="affine(2,1) binary-cross-entropy",
                  epochs=50, batch_size=32, lr=0.1, lr_decay=1.0),
    "mnist": dict(net="affine(784,100) relu affine(100,10) softmax-cross-entropy",
                  epochs=30, batch_size=100, lr=0.5, lr_decay=0.95),
}
DEFAULTS["fashion-mnist"] = DEFAULTS["mnist"]  # the same image size and classes
# one attention head, then the same affine map at every token: tokens meet only in the attention
DEFAULTS["reverse"] = dict(net="attention(16,16,16,8) tokenwise-affine(16,8,8) token-softmax-cross-entropy(8,8)",
                           epochs=10, batch_size=32, lr=0.5, lr_decay=1.0)
DEFAULTS["text"] = dict(net="embedding(61,32,16) lstm(32,128,16) affine(128,61) softmax-cross-entropy",
                        epochs=3, batch_size=32, lr=1.0, lr_decay=0.75)
SAMPLE_LENGTH, TEMPERATURE = 200, 0.8  # --data text: the characters generated after training


# the optimizers' hyper-parameters besides lr, one option each (default: torch.optim's)
HYPER_OPTIONS = {
    "momentum": "momentum, nesterov: the velocity's decay (default 0.9)",
    "alpha": "rmsprop: the squared gradients' decay (default 0.99)",
    "beta1": "adam: the first moment's decay (default 0.9)",
    "beta2": "adam: the second moment's decay (default 0.999)",
    "eps": "adagrad, rmsprop, adam: added to the square root in the denominator "
           "(default 1e-10 adagrad, 1e-8 others)",
    "weight_decay": "every optimizer: L2 weight decay, weight_decay * p added to the gradient (default 0)",
}


def _defaults_text() -> str:
    return "; ".join(f"{name}: {', '.join(f'{k}={v}' for k, v in values.items())}"
                     for name, values in DEFAULTS.items())


def _blas_threads(text: str):
    """--blas-threads N (at least 1) or auto."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1 or auto, got {text!r}")
    return value


def add_arguments(parser):
    parser.epilog = "defaults per data set -- " + _defaults_text()
    parser.add_argument("--data", choices=NAMES, default="digits",
                        help="digits (bundled with scikit-learn, the default), moons "
                             "(make_moons(2000, noise=0.4)), mnist or fashion-mnist (downloaded once by "
                             "symprop data NAME, or the IDX files in --data-dir), text (a character model "
                             "of a shipped Shakespeare excerpt: windows of the T characters the net's "
                             "embedding(V,D,T) reads, each labelled with the next character; the text's last "
                             "tenth validates), reverse (sequences of 8 tokens of 8 symbols to reverse: a class "
                             "per token, for attention)")
    parser.add_argument("--data-dir", metavar="DIR", help="for mnist and fashion-mnist: a folder with the IDX files "
                                                          "(gzipped or not) instead of the downloaded ones")
    parser.add_argument("--net", help='network spec, e.g. "affine(64,32) tanh affine(32,10) '
                                      'softmax-cross-entropy"')
    parser.add_argument("--epochs", type=int, help="passes over the training part (default: the data set's, "
                                                   "listed below)")
    parser.add_argument("--batch-size", type=int, help="examples per gradient step (default: the data set's)")
    parser.add_argument("--lr", type=float, help="learning rate of the first epoch (default: the data "
                                                 "set's for sgd, torch.optim's for the other optimizers)")
    parser.add_argument("--optimizer", default="sgd", metavar="NAME",
                        help=f"update rule: {', '.join(RULES)} (default sgd)")
    for name, help_text in HYPER_OPTIONS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, help=help_text)
    parser.add_argument("--lr-decay", type=float, help="multiply the rate by this after each epoch")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds initialisation, validation split and shuffling (default 0)")
    parser.add_argument("--val-split", type=float,
                        help="fraction of the training part held out for validation (default 0.1; "
                             "not for text, whose validation part is fixed)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32",
                        help="the numbers the kernels compute in (default float32)")
    parser.add_argument("--plot", metavar="PNG", help="write loss/accuracy curves (and the "
                                                      "decision boundary for 2-D data) here")
    parser.add_argument("--plot-with", metavar="JSON", action="append", default=[],
                        help="also draw an earlier run's curves (from its --history file) in the --plot "
                             "figure; may be given more than once")
    parser.add_argument("--history", metavar="JSON", help="write this run's curves here (for --plot-with)")
    parser.add_argument("--save", metavar="NPZ", help="save weights, spec and preprocessing here")
    parser.add_argument("--blas-threads", type=_blas_threads, default="auto", metavar="N|auto",
                        help="threads for the matrix products (default auto: every usable core when a "
                             f"step's products reach {MIN_STEP_FLOP / 1e6:g} MFLOP and the machine is not "
                             "busy; else 1)")
    parser.add_argument("--sample", type=int, metavar="N",
                        help=f"text: generate N characters after training, from a window of the validation "
                             f"text (default {SAMPLE_LENGTH}; 0: none)")
    parser.add_argument("--temperature", type=float,
                        help=f"text: divide the scores by this before the softmax each sampled character is "
                             f"drawn from; below 1 more likely characters, above 1 more varied (default "
                             f"{TEMPERATURE:g}). Samples are drawn from --seed, so a run repeats them")
    parser.add_argument("--no-progress", action="store_true",
                        help="print one line per epoch instead of a progress bar")


def _epoch_line(stats, epochs: int) -> str:
    width = len(str(epochs))
    line = (f"epoch {stats.epoch:>{width}}/{epochs}  lr {stats.lr:.4g}  loss {stats.train_loss:.4f}"
            f"  acc {stats.train_accuracy:.4f}")
    if stats.val_loss == stats.val_loss:  # not nan
        line += f"  val_loss {stats.val_loss:.4f}  val_acc {stats.val_accuracy:.4f}"
    return line + f"  {stats.seconds:.3f} s"


def _check_outputs(args):
    """--save, --history and --plot: each a new path or a file of its own kind, none an input
    (a --plot-with file) and no two the same file."""
    from pathlib import Path

    from symprop.training.plots import plot_path

    outputs = []
    for option, path, kind in (("--save", args.save, "weights"), ("--history", args.history, "history"),
                               ("--plot", args.plot, "picture")):
        if path is None:
            continue
        inputs = args.plot_with
        path = plot_path(path, inputs) if kind == "picture" else check_output_path(path, option, kind, inputs)
        if any(Path(path).absolute() == Path(other).absolute() for _, other in outputs):
            raise SympropError(f"{option} {path} is also written by another option of this command; name another file")
        outputs.append((option, path))


def _check_text_options(args, text: bool):
    """--val-split belongs to the other data sets, --sample and --temperature to text: an
    option that would be ignored is refused."""
    if text and args.val_split is not None:
        raise SympropError("--val-split does not apply to --data text: its validation part is the text's last tenth")
    for option, value in (("--sample", args.sample), ("--temperature", args.temperature)):
        if value is not None and not text:
            raise SympropError(f"{option} is for --data text (a character model's generated text)")
    if args.sample is not None and args.sample < 0:
        raise SympropError(f"--sample must be a number of characters, 0 or more, got {args.sample}")
    if args.temperature is not None and not (args.temperature > 0 and math.isfinite(args.temperature)):
        raise SympropError(f"--temperature must be a positive number, got {args.temperature}")


def _report_text(args, result, dataset):
    """A character model's validation loss in nats per character beside the counting baselines
    (unigram, bigram), then text it generates after the validation text's first window (seeded
    by --seed)."""
    import numpy as np

    from symprop.training.text import sample

    corpus = dataset.corpus
    print(f"validation loss {result.history[-1].val_loss:.4f} nats/character; counting baselines: "
          f"unigram {corpus.counting_loss(0):.4f} (character frequencies), bigram {corpus.counting_loss(1):.4f} "
          "(the last character)")
    length = args.sample if args.sample is not None else SAMPLE_LENGTH
    if length:
        temperature = args.temperature if args.temperature is not None else TEMPERATURE
        seed_text = corpus.text[corpus.split:corpus.split + dataset.window]
        drawn = sample(result.net, result.params, corpus, seed_text, length,
                       np.random.default_rng((args.seed, 2)), temperature, result.state)
        print(f"sample at temperature {temperature:g}: the validation text's first {dataset.window} characters, "
              f"then {length} drawn from the model, one at a time:")
        print("-" * 40 + f"\n{seed_text}{drawn}\n" + "-" * 40)


def run(args) -> int:
    for module in ("sklearn", "tqdm", "threadpoolctl"):  # the train extra, before any work
        require(module, "symprop train")
    if args.plot:
        require("matplotlib", "symprop train --plot")
    text = args.data == "text"
    _check_text_options(args, text)
    defaults = DEFAULTS[args.data]
    spec = args.net or defaults["net"]
    rule = rule_named(args.optimizer)
    default_lr = defaults["lr"] if rule.name == "sgd" else rule.hyper_parameter("lr").default
    config = Config(
        epochs=args.epochs if args.epochs is not None else defaults["epochs"],
        batch_size=args.batch_size if args.batch_size is not None else defaults["batch_size"],
        lr=args.lr if args.lr is not None else default_lr,
        optimizer=rule.name,
        hyper={name: getattr(args, name) for name in HYPER_OPTIONS if getattr(args, name) is not None},
        lr_decay=args.lr_decay if args.lr_decay is not None else defaults["lr_decay"],
        seed=args.seed, val_split=0.0 if text else (args.val_split if args.val_split is not None else 0.1),
        dtype=args.dtype,
        progress=False if args.no_progress else None, blas_threads=args.blas_threads)
    config.check()
    _check_outputs(args)  # before training, not after minutes of it
    if args.plot_with and not args.plot:
        raise SympropError("--plot-with draws into the --plot figure: give --plot PNG too")
    from symprop.training.history import read_history, write_history
    others = [read_history(path) for path in args.plot_with]  # checked before training
    if text:  # the windows are as long as the net reads: the net first
        net = load_net(spec)
        dataset = load_dataset(args.data, args.data_dir, net=net)
    else:
        dataset = load_dataset(args.data, args.data_dir)
        net = load_net(spec)
    Task(net, dataset.name, dataset.n_features, dataset.n_classes, dataset.tokens)  # sizes fit? fail before output
    n_params = sum(math.prod(shape) for shape in net.PARAM_SHAPES)
    if text:
        print(f"data: {dataset.description}; {len(dataset.x_train):,} train, {len(dataset.x_val):,} validation "
              f"windows; {dataset.n_classes} characters")
    else:
        n_val = validation_count(len(dataset.x_train), config.val_split)
        classes = f"{dataset.n_classes} classes" + (f" per token, {dataset.tokens} tokens" if dataset.tokens else "")
        print(f"data: {dataset.description}; {len(dataset.x_train) - n_val} train, {n_val} validation, "
              f"{len(dataset.x_test)} test; {dataset.n_features} features, {classes}")
    print(f"net:  {net.SPEC}  ({n_params:,} parameters, {config.dtype})")
    epochs = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
    hyper = "".join(f"{name} {value:g}, " for name, value in config.checked_hyper().items()
                    if not config.plain_sgd)
    threads = blas_threads_for(net, config)  # decided once, printed, and used for the whole run
    config = dataclasses.replace(config, blas_threads=threads)
    print(f"{config.optimizer}:{' ' * max(1, 5 - len(config.optimizer))}{epochs}, batch {config.batch_size}, "
          f"lr {config.lr:g}{f' x {config.lr_decay:g} per epoch' if config.lr_decay != 1 else ''}, "
          f"{hyper}seed {config.seed}, validation {'fixed' if text else f'{config.val_split:g}'}, "
          f"BLAS threads {threads if threads is not None else 'BLAS default'}"
          f"{' (auto)' if args.blas_threads == 'auto' else ''}"
          # which BLAS the products call (MKL's where installed); a tiny net's scalar step calls none
          f"{f', products by {net.GEMM_BLAS}' if hasattr(net, 'GEMM_BLAS') else ''}", flush=True)

    def on_epoch(stats, bar_shown):
        if not bar_shown:
            print(_epoch_line(stats, config.epochs), flush=True)

    result = train(net, dataset, config, on_epoch)
    print(f"step kernel compiled/loaded in {result.compile_seconds:.2f} s (not counted below)")
    accuracies = f"train accuracy {result.train_accuracy:.4f}"
    if result.n_val:
        accuracies += f"   validation accuracy {result.history[-1].val_accuracy:.4f}"
    if result.n_test:
        accuracies += f"   test accuracy {result.test_accuracy:.4f}   (test loss {result.test_loss:.4f})"
    print(accuracies)
    if dataset.tokens:
        print(f"(accuracies count tokens; test sequences with every token right: {result.test_sequence_accuracy:.4f})")
    print(f"time per epoch {result.seconds_per_epoch:.4f} s (training steps only), "
          f"{result.examples_per_second:,.0f} examples/s")
    if text:
        _report_text(args, result, dataset)
    if args.save:
        save_model(args.save, result, dataset, config)
        print(f"saved weights to {args.save}")
    if args.history:
        from symprop.training.history import history_record
        print(f"wrote history {write_history(args.history, history_record(result, dataset.name, config))}")
    if args.plot:
        from symprop.training.plots import plot_training
        written = plot_training(args.plot, result, dataset, config, others)
        print(f"wrote plot {written}")
    return 0
