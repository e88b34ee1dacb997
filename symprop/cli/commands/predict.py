"""symprop predict: evaluate weights saved by `symprop train --save` on a data set."""
from __future__ import annotations

import numpy as np

from symprop.symbolic.errors import SympropError
from symprop.training.datasets import NAMES, load_dataset
from symprop.training.train import DTYPES, Task, load_model, load_net, model_params, model_state, predict


def add_arguments(parser):
    parser.add_argument("--weights", required=True, metavar="NPZ",
                        help="a file written by symprop train --save")
    parser.add_argument("--data", choices=NAMES,
                        help="data set to evaluate on (default: the one the model was trained on)")
    parser.add_argument("--data-dir", metavar="DIR", help="for mnist and fashion-mnist: a folder with the IDX "
                                                          "files instead of the downloaded ones")


def run(args) -> int:
    model = load_model(args.weights)
    net = load_net(model.spec)
    params = model_params(net, model, args.weights)
    state = model_state(net, model, args.weights)
    dataset = load_dataset(args.data or model.dataset, args.data_dir, net=net)  # text: windows of the net's T
    if dataset.n_classes != model.n_classes:
        raise SympropError(f"{args.weights}: the model predicts {model.n_classes} classes, data set "
                           f"{dataset.name} has {dataset.n_classes}")
    if model.scaling.mean.shape != (dataset.n_features,):
        raise SympropError(f"{args.weights}: the model was trained on {model.scaling.mean.shape[0]} "
                           f"features, data set {dataset.name} has {dataset.n_features}")
    task = Task(net, dataset.name, dataset.n_features, dataset.n_classes, dataset.tokens)
    dtype = DTYPES[model.dtype]
    print(f"model: {model.spec}  (trained on {model.dataset}, {model.dtype})")
    print(f"data:  {dataset.description}")
    parts = ([("train", dataset.x_train, dataset.y_train), ("validation", dataset.x_val, dataset.y_val)]
             if dataset.x_val is not None else  # the text's fixed parts
             [("train (incl. validation rows)", dataset.x_train, dataset.y_train),
              ("test", dataset.x_test, dataset.y_test)])
    for part, x, y in parts:
        correct = predict(net, params, task, model.scaling, x, dtype, state) == y
        counted = " tokens" if dataset.tokens else ""
        print(f"{part} accuracy {np.mean(correct):.4f}  ({int(correct.sum())}/{y.size}{counted})")
    return 0
