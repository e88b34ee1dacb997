"""The text data set: a character-level language model on a short public-domain text.

The text (training/texts/shakespeare.txt, the opening of Coriolanus; its provenance is in
training/texts/README.md) ships with the package, so `symprop train --data text` needs no
download. Each example is a window of T characters as token ids (a character's id is its place
in the text's sorted vocabulary) and its class is the character that follows. The window is the
net's: the T of the embedding(V,D,T) it starts with.

The last tenth of the text is the validation part, contiguous, and no window crosses the split:
a random hold-out of windows that overlap their neighbours by T-1 characters would validate on
text the model has trained on.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from symprop.symbolic.errors import SympropError

from .datasets import Dataset
from .train import scores

TEXT_FILE = Path(__file__).resolve().parent / "texts" / "shakespeare.txt"
TEXT_TITLE = "Shakespeare, the opening of Coriolanus"
VALIDATION_FRACTION = 0.1  # the text's last tenth
MAX_WINDOW = 256  # every window is a row of X: 90,000 rows of 256 float64 ids are 180 MB
TOKEN_LOSSES = ("softmax-cross-entropy", "log-softmax-nll")  # a mean of -log p(next character): nats per character


@dataclass(frozen=True)
class Corpus:
    """A text and its vocabulary: the sorted distinct characters, a character's id its place."""
    text: str
    vocabulary: str

    @classmethod
    def read(cls, path: str | Path | None = None) -> "Corpus":
        """The text at path, by default the shipped one (TEXT_FILE)."""
        text = Path(path or TEXT_FILE).read_text(encoding="utf-8")
        return cls(text, "".join(sorted(set(text))))

    @property
    def split(self) -> int:
        """Where the validation part starts: the text's last VALIDATION_FRACTION."""
        return len(self.text) - int(round(VALIDATION_FRACTION * len(self.text)))

    def encode(self, text: str) -> np.ndarray:
        ids = {character: i for i, character in enumerate(self.vocabulary)}
        return np.array([ids[character] for character in text], dtype=np.int64)

    def decode(self, ids) -> str:
        return "".join(self.vocabulary[int(i)] for i in ids)

    def counting_loss(self, context: int) -> float:
        """The validation loss of counting instead of learning: p(character | the ``context``
        characters before it) from the training part's counts, add-one smoothed (an unseen
        pair is not infinitely surprising). Context 0 is the unigram baseline (the character
        frequencies alone), 1 the bigram (the last character): a model that beats the bigram
        has used more than the last character."""
        train, validation = self.text[:self.split], self.text[self.split:]
        grams = Counter(train[i - context:i + 1] for i in range(context, len(train)))
        seen = Counter()  # how often each context is followed by some character
        for gram, count in grams.items():
            seen[gram[:-1]] += count
        size = len(self.vocabulary)
        return float(-np.mean([math.log((grams[gram] + 1) / (seen[gram[:-1]] + size))
                               for gram in (validation[i - context:i + 1] for i in range(context, len(validation)))]))


@dataclass
class TextDataset(Dataset):
    """A Dataset of windows with its fixed validation part and the corpus they came from."""
    corpus: Corpus = field(kw_only=True)
    window: int = field(kw_only=True)


def windows(ids: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window of ``window`` consecutive ids (as float64 rows, the kernels' X) and the id
    that follows each (its class)."""
    starts = np.lib.stride_tricks.sliding_window_view(ids[:-1], window)
    return starts.astype(np.float64), ids[window:].copy()


def check_net(net, corpus: Corpus) -> int:
    """The window T a net reads, after checking it can model this text: embedding(V,D,T) first,
    with V the vocabulary's size, V scores out, a cross-entropy loss. Any mismatch is one line
    naming it and the value expected."""
    size = len(corpus.vocabulary)
    example = f"e.g. \"embedding({size},32,16) lstm(32,128,16) affine(128,{size}) softmax-cross-entropy\""
    first = net.SPEC.split()[0]
    if not first.startswith("embedding("):
        raise SympropError(f"--data text: the net must start with embedding({size},D,T), reading windows of T "
                           f"character ids, {example}; {net.SPEC!r} starts with {first}")
    rows = net.PARAM_SHAPES[0][0]
    if rows != size:
        raise SympropError(f"--data text: the net's {first} has a table of {rows} rows, but the text has "
                           f"{size} distinct characters: write embedding({size},D,T)")
    if net.OUTPUT_SIZE != size:
        raise SympropError(f"--data text: the net gives {net.OUTPUT_SIZE} scores per example, but the text "
                           f"has {size} characters to predict: end in affine(H,{size}) softmax-cross-entropy")
    if net.LOSS not in TOKEN_LOSSES:
        raise SympropError(f"--data text: the net ends in {net.LOSS}; a character model ends in "
                           f"{' or '.join(TOKEN_LOSSES)}")
    window = net.INPUT_SIZE
    longest = min(MAX_WINDOW, len(corpus.text) - corpus.split - 1)  # and one validation window at least
    if window > longest:
        raise SympropError(f"--data text: the net's {first} reads windows of T = {window} characters; "
                           f"T can be at most {longest} (each window is a row of the data)")
    return window


def load_text(net, corpus: Corpus | None = None) -> TextDataset:
    """The text (by default the shipped one) cut into windows of the net's T, after check_net."""
    corpus = corpus or Corpus.read()
    window = check_net(net, corpus)
    ids = corpus.encode(corpus.text)
    x_train, y_train = windows(ids[:corpus.split], window)
    x_val, y_val = windows(ids[corpus.split:], window)
    description = (f"{TEXT_TITLE} ({len(corpus.text):,} characters, {len(corpus.vocabulary)} distinct; "
                   f"the last {VALIDATION_FRACTION:.0%} validates), windows of {window} characters")
    return TextDataset("text", description, x_train, y_train, np.zeros((0, window)), np.zeros(0, np.int64),
                       n_classes=len(corpus.vocabulary), pixel_max=1.0, x_val=x_val, y_val=y_val,
                       corpus=corpus, window=window)


def sample(net, params, corpus: Corpus, seed: str, length: int, rng: np.random.Generator,
           temperature: float = 1.0, state=()) -> str:
    """``length`` characters, each drawn from the model's softmax (scores divided by
    ``temperature``: below 1 sharper, above 1 flatter) given the T characters before it,
    starting from the last T characters of ``seed``. The same rng state draws the same text."""
    if not (temperature > 0 and math.isfinite(temperature)):
        raise SympropError(f"--temperature must be a positive number, got {temperature}")
    window = net.INPUT_SIZE
    if len(seed) < window:
        raise SympropError(f"the seed text has {len(seed)} characters; the net reads windows of {window}")
    dtype = params[0].dtype
    context = list(corpus.encode(seed[-window:]))
    drawn = []
    for _ in range(length):
        logits = scores(net, params, np.array([context], dtype=dtype), state)[0].astype(np.float64) / temperature
        weights = np.exp(logits - logits.max())  # no overflow: the largest is exp(0)
        choice = int(rng.choice(len(weights), p=weights / weights.sum()))
        drawn.append(choice)
        context = context[1:] + [choice]
    return corpus.decode(drawn)
