"""symprop train --data text: the shipped text, its windows and split, the checks on a net, a
short character model that learns more than the last character, and seeded sampling."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from symprop.cli import main
from symprop.symbolic.errors import SympropError
from symprop.training import text
from symprop.training.text import Corpus, check_net, load_text, sample, windows
from symprop.training.train import load_model, load_net, model_params

SLICE = 40_000  # characters of the text the short run trains on (its first 36,000 train)


@pytest.fixture(scope="module")
def corpus():
    return Corpus.read()


def fake_net(spec: str, table_rows: int, outputs: int, window: int, loss: str = "softmax-cross-entropy"):
    """What check_net reads of a generated network module, without generating one."""
    return SimpleNamespace(SPEC=spec, PARAM_SHAPES=((table_rows, 8),), OUTPUT_SIZE=outputs, INPUT_SIZE=window,
                           LOSS=loss)


def test_the_shipped_text_is_the_documented_excerpt(corpus):
    data = text.TEXT_FILE.read_bytes()
    readme = (text.TEXT_FILE.parent / "README.md").read_text()
    assert hashlib.sha256(data).hexdigest() in readme
    assert f"first {len(data):,} bytes" in readme
    assert data.startswith(b"First Citizen:\nBefore we proceed any further, hear me speak.")


def test_the_vocabulary_is_every_character_once_sorted_and_ids_round_trip(corpus):
    assert list(corpus.vocabulary) == sorted(set(corpus.text))
    ids = corpus.encode(corpus.text)
    assert ids.min() == 0 and ids.max() == len(corpus.vocabulary) - 1
    assert corpus.decode(ids) == corpus.text
    assert corpus.vocabulary[corpus.encode("a")[0]] == "a"


def test_each_window_is_followed_by_its_target_and_no_window_crosses_the_split(corpus):
    window = 5
    dataset = load_text(fake_net("embedding(61,8,5) rnn(8,4,5) affine(4,61) softmax-cross-entropy",
                                 len(corpus.vocabulary), len(corpus.vocabulary), window), corpus)
    split = corpus.split
    assert split == len(corpus.text) - round(0.1 * len(corpus.text))
    assert dataset.x_train.shape == (split - window, window) and dataset.y_train.shape == (split - window,)
    assert dataset.x_val.shape == (len(corpus.text) - split - window, window)
    for k in (0, 1, 777, split - window - 1):  # the last training target is the character before the split
        assert corpus.decode(dataset.x_train[k]) + corpus.decode([dataset.y_train[k]]) == corpus.text[k:k + window + 1]
    for k in (0, 3, len(dataset.x_val) - 1):  # validation windows start at the split and end with the text
        start = split + k
        following = corpus.decode([dataset.y_val[k]])
        assert corpus.decode(dataset.x_val[k]) + following == corpus.text[start:start + window + 1]
    assert dataset.n_classes == len(corpus.vocabulary) and len(dataset.x_test) == 0


def test_windows_of_a_short_sequence():
    x, y = windows(np.array([4, 0, 3, 1, 2]), 2)
    assert x.tolist() == [[4, 0], [0, 3], [3, 1]] and y.tolist() == [3, 1, 2]


@pytest.mark.parametrize("spec, rows, outputs, window, loss, message", [
    ("affine(16,61) softmax-cross-entropy", 16, 61, 16, "softmax-cross-entropy",
     r"the net must start with embedding\(61,D,T\).*starts with affine\(16,61\)$"),
    ("embedding(60,8,4) rnn(8,4,4) affine(4,61) softmax-cross-entropy", 60, 61, 4, "softmax-cross-entropy",
     r"table of 60 rows, but the text has 61 distinct characters: write embedding\(61,D,T\)$"),
    ("embedding(61,8,4) rnn(8,4,4) affine(4,10) softmax-cross-entropy", 61, 10, 4, "softmax-cross-entropy",
     r"gives 10 scores per example, but the text has 61 characters to predict: end in affine\(H,61\)"),
    ("embedding(61,8,4) rnn(8,4,4) affine(4,61) mse", 61, 61, 4, "mse",
     r"ends in mse; a character model ends in softmax-cross-entropy or log-softmax-nll$"),
    ("embedding(61,8,20000) rnn(8,4,20000) affine(4,61) softmax-cross-entropy", 61, 61, 20000,
     "softmax-cross-entropy", r"windows of T = 20000 characters; T can be at most 256 \(each window is a row"),
])
def test_a_net_that_does_not_fit_the_text_is_named_with_the_value_expected(corpus, spec, rows, outputs, window,
                                                                            loss, message):
    with pytest.raises(SympropError, match=message) as error:
        check_net(fake_net(spec, rows, outputs, window, loss), corpus)
    assert "\n" not in str(error.value)


def test_a_short_text_bounds_the_window_by_its_validation_part(corpus):
    short = Corpus(corpus.text[:1000], corpus.vocabulary)  # its last 100 characters validate: T at most 99
    spec = "embedding(61,8,100) rnn(8,4,100) affine(4,61) softmax-cross-entropy"
    with pytest.raises(SympropError, match="T = 100 characters; T can be at most 99"):
        check_net(fake_net(spec, 61, 61, 100), short)
    assert check_net(fake_net(spec.replace("100", "99"), 61, 61, 99), short) == 99


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, run_kernel_cache):
    """One CLI run on the text's first SLICE characters (a small RNN, 2 epochs): its output,
    the corpus it saw, and its saved weights; then a run whose net has the full text's vocabulary."""
    folder = tmp_path_factory.mktemp("text")
    excerpt = folder / "excerpt.txt"
    excerpt.write_text(Corpus.read().text[:SLICE], encoding="utf-8")
    corpus = Corpus.read(excerpt)
    size = len(corpus.vocabulary)
    spec = f"embedding({size},8,8) rnn(8,32,8) affine(32,{size}) softmax-cross-entropy"
    weights, history, plot, out = folder / "model.npz", folder / "run.json", folder / "run.png", io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYMPROP_CACHE", str(run_kernel_cache))
        patch.setattr(text, "TEXT_FILE", excerpt)
        with contextlib.redirect_stdout(out):
            status = main(["train", "--data", "text", "--net", spec, "--epochs", "2", "--lr", "0.3", "--seed", "3",
                           "--no-progress", "--sample", "60", "--save", str(weights), "--history", str(history),
                           "--plot", str(plot)])
            assert status == 0, out.getvalue()
            assert main(["predict", "--weights", str(weights)]) == 0
        mismatch = io.StringIO()
        with contextlib.redirect_stderr(mismatch):  # the real vocabulary's size, not this text's
            bad = main(["train", "--data", "text", "--net", spec.replace(f"({size},", "(61,")])
    return SimpleNamespace(out=out.getvalue(), corpus=corpus, spec=spec, weights=weights, history=history,
                           plot=plot, mismatch=(bad, mismatch.getvalue()))


def test_a_short_run_learns_more_than_the_last_character(short_run):
    """Below the bigram baseline (counts of each character after the one before): a model that
    only learnt the last character's embedding, or whose gradients were wrong, stays above it
    (this slice: unigram 3.25, bigram 2.51 nats per character; the run reaches 2.27)."""
    unigram, bigram = short_run.corpus.counting_loss(0), short_run.corpus.counting_loss(1)
    assert 3.2 < unigram < 3.3 and 2.45 < bigram < 2.55
    reported = re.search(r"validation loss (\d+\.\d+) nats/character; counting baselines: unigram (\d+\.\d+) "
                         r"\(character frequencies\), bigram (\d+\.\d+)", short_run.out)
    assert reported, short_run.out
    loss = float(reported.group(1))
    assert (float(reported.group(2)), float(reported.group(3))) == (round(unigram, 4), round(bigram, 4))
    assert loss < bigram - 0.1, short_run.out
    assert "35,992 train, 3,992 validation windows" in short_run.out  # 36,000 - 8 and 4,000 - 8


def test_sampling_is_seeded_and_draws_only_vocabulary_characters(short_run):
    model = load_model(short_run.weights)
    net = load_net(model.spec)
    params = model_params(net, model, "test")
    corpus = short_run.corpus
    seed_text = corpus.text[corpus.split:corpus.split + 8]
    drawn = [sample(net, params, corpus, seed_text, 60, np.random.default_rng((seed, 2)), 0.8) for seed in (3, 3, 4)]
    assert drawn[0] == drawn[1] != drawn[2]
    assert all(len(d) == 60 and set(d) <= set(corpus.vocabulary) for d in drawn)
    assert f"{seed_text}{drawn[0]}" in short_run.out  # the run printed the sample its --seed draws
    with pytest.raises(SympropError, match="--temperature must be a positive number, got 0"):
        sample(net, params, corpus, seed_text, 5, np.random.default_rng(0), 0)


def test_the_command_line_refuses_a_mismatched_net_and_misplaced_options_on_one_line(short_run, capsys):
    status, err = short_run.mismatch
    assert status == 2 and err.count("\n") == 1
    assert "has a table of 61 rows, but the text has 58 distinct characters: write embedding(58,D,T)" in err
    assert main(["train", "--data", "text", "--val-split", "0.2"]) == 2
    assert "--val-split does not apply to --data text" in capsys.readouterr().err
    assert main(["train", "--data", "moons", "--sample", "10"]) == 2
    assert "--sample is for --data text" in capsys.readouterr().err
    assert main(["train", "--data", "text", "--temperature", "-1"]) == 2
    assert "--temperature must be a positive number, got -1.0" in capsys.readouterr().err


def test_the_run_saves_plots_and_records_a_history_without_a_test_part_and_predict_reads_it_back(short_run):
    assert short_run.plot.read_bytes().startswith(b"\x89PNG")
    record = json.loads(short_run.history.read_text())
    assert record["data"] == "text" and record["test_accuracy"] is None and len(record["val_loss"]) == 2
    trained = re.search(r"train accuracy (\d\.\d+)   validation accuracy (\d\.\d+)\n", short_run.out)
    assert trained and "test accuracy" not in short_run.out
    predicted = re.findall(r"(train|validation) accuracy (\d\.\d+)  \((\d+)/(\d+)\)", short_run.out)
    assert [(part, value) for part, value, _, _ in predicted] == [("train", trained.group(1)),
                                                                  ("validation", trained.group(2))]
    assert [int(count) for *_, count in predicted] == [35_992, 3_992]
