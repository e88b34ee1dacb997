"""The layer registry: every layer symprop knows, each defined once by its forward formula.

Backward rules are never typed in. Each layer class turns its forward formula into a
``Derivation``: SymPy differentiates, the chain rule multiplies by a symbolic upstream
gradient, and ``canonical_form`` picks the overflow-free form the kernels use (in terms of the
saved forward output where that is stabler, e.g. sigmoid' = y(1 - y)). Transcripts, kernels
and tests all read from ``REGISTRY``; adding an elementwise layer is one line in it.
"""
from __future__ import annotations

from .errors import SympropError
from .ops.affine import Affine
from .ops.attention import Attention
from .ops.base import (I, J, K, MAX_DERIVATIVE_OPS, MAX_DERIVE_SECONDS, N, Derivation, Label, Op, Step,
                       _apply_kink_convention, partial, real)
from .ops.conv import Conv2d, Flatten, Pool
from .ops.dropout import Dropout
from .ops.embedding import Embedding
from .ops.gated import GRU, LSTM
from .ops.multihead import MultiHeadAttention
from .ops.elementwise import Elementwise, PerFeature
from .ops.losses import REDUCTIONS, ElementwiseLoss, Huber, MulticlassHinge
from .ops.norm import BatchNorm, LayerNorm
from .ops.recurrent import RNN
from .ops.tokenwise import TokenSoftmaxCrossEntropy, TokenwiseAffine
from .ops.word2vec import CBOW, SkipGram
from .ops.softmax import LogSoftmaxNLL, Softmax, SoftmaxCrossEntropy

__all__ = ["Affine", "Attention", "BatchNorm", "Conv2d", "Derivation", "Dropout", "Elementwise", "Embedding", "ElementwiseLoss", "Flatten",
           "Huber", "I", "J", "K", "Label", "LayerNorm", "LogSoftmaxNLL", "MAX_DERIVATIVE_OPS", "MAX_DERIVE_SECONDS",
           "MultiHeadAttention", "MulticlassHinge", "N", "Op", "PerFeature", "Pool", "REDUCTIONS",
           "REGISTRY", "RNN", "Registry", "Softmax", "SoftmaxCrossEntropy", "Step", "TokenSoftmaxCrossEntropy",
           "TokenwiseAffine", "formula_layer", "partial", "real",
           "_apply_kink_convention"]


class Registry(dict):
    """name -> layer, in definition order; derivations computed once and cached."""

    def __init__(self, layers):
        super().__init__((layer.name, layer) for layer in layers)
        self._derivations = {}
        self._builtin = dict(self)

    def is_builtin(self, op) -> bool:
        """Whether op is the one this registry was made with under its name (not one registered
        or put in later): a built-in op is the same in every process."""
        return self._builtin.get(op.name) is op

    def get_layer(self, name: str):
        if name not in self:
            raise SympropError(f"unknown layer {name!r}; known layers: {', '.join(self)}")
        return self[name]

    def register(self, op):
        """Add an op (defined anywhere, e.g. in a test file); returns it."""
        if op.name in self:
            raise SympropError(f"a layer named {op.name!r} is already registered")
        self[op.name] = op
        return op

    def remove(self, name: str) -> None:
        self.pop(name, None)
        self._derivations.pop(name, None)

    def derive(self, name: str) -> Derivation:
        if name not in self._derivations:
            self._derivations[name] = self.get_layer(name).derive()
        return self._derivations[name]


# ---------------------------------------------------------------------------------------
# THE REGISTRY. One definition per layer; everything else (derivations, transcripts,
# kernels, tests) follows from it. To add an elementwise activation, add one Elementwise line.
# ---------------------------------------------------------------------------------------
REGISTRY = Registry([
    Elementwise("add", "x + y", "addition node: passes the upstream gradient to both inputs",
                inputs=("x", "y"), output="out"),
    Elementwise("mul", "x * y", "multiplication node: each input gets the upstream times the other",
                inputs=("x", "y"), output="out"),
    Elementwise("identity", "x", "no activation"),
    Elementwise("relu", "max(0, x)", "rectified linear unit"),
    Elementwise("sigmoid", "1/(1 + exp(-x))", "logistic sigmoid"),
    Elementwise("tanh", "tanh(x)", "hyperbolic tangent"),
    Affine("affine", "fully connected layer Y = X W + b, one bias per output"),
    Affine("affine-shared-bias", "fully connected layer Y = X W + c, one bias shared by all outputs "
           "(the seeds' worked example)", shared_bias=True),
    BatchNorm("batchnorm", "batch normalisation: each feature normalised over the batch, then g xhat + b "
              "(running averages at inference)"),
    LayerNorm("layernorm", "layer normalisation: each row normalised over its features, then g xhat + b"),
    Dropout("dropout", "inverted dropout: units dropped with probability p, survivors scaled by 1/(1-p); "
            "identity at inference"),
    Softmax("softmax", "softmax over each row"),
    SoftmaxCrossEntropy("softmax-cross-entropy", "softmax then cross-entropy with one-hot targets, "
                        "mean over the batch"),
    ElementwiseLoss("squared-error", "(y - t)**2 / 2", "1/2 sum of squared errors (the seeds' E)",
                    reduction="sum"),
    ElementwiseLoss("mse", "(y - t)**2", "mean squared error over all elements", reduction="mean"),
    ElementwiseLoss("binary-cross-entropy", "-t*log(sigmoid(z)) - (1 - t)*log(1 - sigmoid(z))",
                    "sigmoid then binary cross-entropy, mean over the batch (takes logits z)",
                    reduction="batch-mean", prediction="z", applies="sigmoid"),
    LogSoftmaxNLL("log-softmax-nll", "log-softmax then the negative log-likelihood of the true class "
                  "(one-hot targets), mean over the batch"),
    MulticlassHinge("multiclass-hinge", "multiclass SVM loss: sum over wrong classes of max(0, z[k] - z[y] + 1), "
                    "mean over the batch"),
    Huber("huber", "(y - t)^2/2 where |y - t| <= 1, else |y - t| - 1/2", "Huber loss (delta 1), mean over "
          "all elements", reduction="mean"),
    Conv2d("conv2d", "2-D convolution (cross-correlation) over NCHW images: conv2d(in, out, k[, stride[, pad]]), "
           "zero padding, one bias per output channel"),
    Pool("maxpool", "max over k x k windows of each channel: maxpool(k[, stride]), stride k by default",
         mode="max"),
    Pool("avgpool", "mean over k x k windows of each channel: avgpool(k[, stride]), stride k by default",
         mode="avg"),
    Flatten("flatten", "images (C, H, W) read as C*H*W features, in NCHW order"),
    RNN("rnn", "tanh RNN over T steps: rnn(D,H,T) reads (T, D) sequences, h_t = tanh(x_t Wx + h_{t-1} Wh + b) "
        "from h_0 = 0, and gives the last state h_T; backpropagation through time"),
    LSTM("lstm", "LSTM over T steps: lstm(D,H,T) reads (T, D) sequences; gates i, f, o (sigmoid) and candidate g "
         "(tanh), c_t = f c_{t-1} + i g, h_t = o tanh(c_t) from h_0 = c_0 = 0; gives h_T; backpropagation through time"),
    GRU("gru", "GRU over T steps (PyTorch's convention): gru(D,H,T) reads (T, D) sequences; gates r, z (sigmoid), "
        "candidate n = tanh(x_t Wx_n + bx_n + r (h_{t-1} Wh_n + bh_n)), h_t = (1 - z) n + z h_{t-1} from h_0 = 0; "
        "gives h_T; backpropagation through time"),
    Embedding("embedding", "lookup table: embedding(V,D[,T]) reads T token ids 0..V-1 per example and gives "
              "each one's row of W (V x D); the gradient is a scatter-add into the rows"),
    Attention("attention", "scaled dot-product self-attention, one head: attention(D,dk,dv,T) reads (T, D) sequences, "
              "P = softmax(Q K^T / sqrt(dk)) row by row (maximum subtracted), and gives O = P V, (T, dv)"),
    Attention("causal-attention", "attention with a causal mask: causal-attention(D,dk,dv,T), token t attends to "
              "tokens s <= t only", causal=True),
    MultiHeadAttention("mha", "multi-head self-attention block: mha(D,H,T) reads (T, D) sequences; Q, K, V = x Wq + bq, "
                       "x Wk + bk, x Wv + bv split into H heads of D/H columns, each softmax(Q_h K_h^T / sqrt(D/H)) V_h, "
                       "concatenated, R = x + O Wo + bo, then layer norm of each token; gives (T, D)"),
    MultiHeadAttention("causal-mha", "the multi-head block with a causal mask in every head: causal-mha(D,H,T), token t "
                       "attends to tokens s <= t only", causal=True),
    TokenwiseAffine("tokenwise-affine", "the same affine layer at every token: tokenwise-affine(D,E,T) reads (T, D) "
                    "sequences and gives y_t = x_t W + b, (T, E); W and b are shared by the tokens"),
    TokenSoftmaxCrossEntropy("token-softmax-cross-entropy", "softmax then cross-entropy at every token: "
                             "token-softmax-cross-entropy(K,T) reads (T, K) logits and one-hot targets per token, "
                             "mean over the N*T tokens"),
    CBOW("cbow", "word2vec CBOW with negative sampling, the whole model and its loss: cbow(V,D,C,K) reads C context "
         "ids, the target id and K negative ids per example; h = mean of the context rows of Win, "
         "L = -log sigmoid(Wout[target] . h) - sum_k log sigmoid(-Wout[negative k] . h), mean over the batch"),
    SkipGram("skipgram", "word2vec skip-gram with negative sampling, one (centre, context) pair per example: "
             "skipgram(V,D,K) reads the centre id, the context id and K negative ids; h = the centre's row of Win, "
             "L = -log sigmoid(Wout[context] . h) - sum_k log sigmoid(-Wout[negative k] . h), mean over the batch"),
])


def formula_layer(formula: str, name: str | None = None) -> Elementwise:
    """An elementwise activation from a user's formula in x (checked by parse_formula).
    Whitespace runs become one space, so the name is one line wherever it is printed."""
    formula = " ".join(formula.split()) if isinstance(formula, str) else formula
    layer = Elementwise(name or f"formula({formula})", formula, "user formula activation")
    layer.expr  # parse now, so a bad formula fails here with its message
    return layer
