"""The sequence families against PyTorch's autograd, where PyTorch is installed: the same network
(rnn, lstm, gru, attention, causal-attention, causal-mha, then affine and softmax cross-entropy) built from
torch.nn modules or torch ops with symprop's random parameters copied in, compared in float64
on the loss and every parameter's gradient to rel 1e-10, on random sizes including T = 1.

symprop's kernels return dL/dX of a sequence layer only when a layer before it needs it, so
dL/dX is compared through such a layer: an embedding table before rnn/lstm/gru/causal-mha (its gradient is
the sequence's dL/dX scattered back to the rows), and a first attention head before a second
(its projections' gradients read the second head's dL/dX through all three paths)."""
import numpy as np
import pytest

from symprop.codegen.network import load_network
from tests.gradcheck import relative_error

torch = pytest.importorskip("torch", reason="PyTorch is the independent reference for the sequence layers; "
                            "it is not a test dependency (pip install torch to run these)")
nn, F = torch.nn, torch.nn.functional

TORCH_TOLERANCE = 1e-10  # float64, the same arithmetic in another order


def tensor(a, grad=False):
    return torch.tensor(np.asarray(a, np.float64), requires_grad=grad)


def symprop_loss_and_grads(spec, rng, token_ids=None):
    """symprop's loss and gradients by parameter name, with the parameters, X and labels drawn."""
    net = load_network(spec)
    params = {name: rng.normal(0, 0.7, shape) for name, shape in zip(net.PARAM_NAMES, net.PARAM_SHAPES)}
    rows = int(rng.integers(1, 5))
    if token_ids is None:
        X = rng.normal(size=(rows, net.INPUT_SIZE))
    else:
        X = rng.integers(0, token_ids, size=(rows, net.INPUT_SIZE)).astype(np.float64)
    classes = rng.integers(0, net.OUTPUT_SIZE, rows)
    loss, *grads = net.loss_and_grads(*params.values(), X, np.eye(net.OUTPUT_SIZE)[classes])
    return params, X, classes, loss, dict(zip(net.PARAM_NAMES, grads))


def assert_agrees(loss, grads, torch_loss, torch_grads, spec):
    """The loss and each named gradient to rel 1e-10 (every symprop gradient has a torch twin)."""
    assert set(torch_grads) == set(grads), spec
    assert relative_error(loss, torch_loss.item()) < TORCH_TOLERANCE, (spec, "loss")
    for name, theirs in torch_grads.items():
        assert relative_error(grads[name], theirs) < TORCH_TOLERANCE, (spec, name)


def classifier_loss(features, W, b, classes):
    """affine then softmax cross-entropy, the mean over the batch as symprop's loss is."""
    return F.cross_entropy(features @ W + b, torch.tensor(classes))


# ---- rnn, lstm, gru against nn.RNN, nn.LSTM, nn.GRU -------------------------------------------
MODULES = {"rnn": lambda d, h: nn.RNN(d, h, nonlinearity="tanh", batch_first=True, dtype=torch.float64),
           "lstm": lambda d, h: nn.LSTM(d, h, batch_first=True, dtype=torch.float64),
           "gru": lambda d, h: nn.GRU(d, h, batch_first=True, dtype=torch.float64)}


def torch_recurrent(family, inputs, hidden, steps, params, names, sequence, rng):
    """The torch module with symprop's weights copied in, its last state, and the torch tensors
    whose gradients mirror symprop's names. Weights: torch's weight_ih is symprop's Wx
    transposed (columns in the same gate blocks: i,f,g,o; r,z,n). Biases: the GRU has two in
    both (bx = b_ih, bh = b_hh); rnn and lstm have one b, which torch's b_ih + b_hh replaces:
    b_ih = b - s, b_hh = s for a random s, so each of torch's two must get symprop's db."""
    module = MODULES[family](inputs, hidden)
    Wx, Wh, *biases = names
    with torch.no_grad():
        module.weight_ih_l0.copy_(tensor(params[Wx].T))
        module.weight_hh_l0.copy_(tensor(params[Wh].T))
        if family == "gru":
            module.bias_ih_l0.copy_(tensor(params[biases[0]]))
            module.bias_hh_l0.copy_(tensor(params[biases[1]]))
        else:
            share = rng.normal(size=params[biases[0]].shape)
            module.bias_ih_l0.copy_(tensor(params[biases[0]] - share))
            module.bias_hh_l0.copy_(tensor(share))
    states, _ = module(sequence)
    grads = lambda: {Wx: module.weight_ih_l0.grad.numpy().T, Wh: module.weight_hh_l0.grad.numpy().T,  # noqa: E731
                     **({biases[0]: module.bias_ih_l0.grad.numpy(), biases[1]: module.bias_hh_l0.grad.numpy()}
                        if family == "gru" else {biases[0]: module.bias_ih_l0.grad.numpy()})}
    return states[:, -1], grads, module


@pytest.mark.parametrize("family", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("steps, fed_by_embedding", [(1, False), (2, False), (5, False), (2, True), (5, True)])
def test_recurrent_layers_agree_with_torch_nn_modules(family, steps, fed_by_embedding, rng):
    """T = 1 too (no recurrent step); an embedding of one token gives features, not a sequence,
    so the embedding-fed cases start at T = 2."""
    inputs, hidden, classes, vocabulary = (int(v) for v in rng.integers(1, 5, 4))
    vocabulary += 1
    head = f"embedding({vocabulary},{inputs},{steps}) " if fed_by_embedding else ""
    spec = f"{head}{family}({inputs},{hidden},{steps}) affine({hidden},{classes + 1}) softmax-cross-entropy"
    params, X, labels, loss, grads = symprop_loss_and_grads(spec, rng, vocabulary if fed_by_embedding else None)
    names = list(params)
    table = None
    if fed_by_embedding:
        table = tensor(params[names[0]], grad=True)
        sequence = F.embedding(torch.tensor(X.astype(np.int64)), table)
        names = names[1:]
    else:
        sequence = tensor(X).reshape(X.shape[0], steps, inputs)
    last, module_grads, module = torch_recurrent(family, inputs, hidden, steps, params, names[:-2], sequence, rng)
    W, b = tensor(params[names[-2]], grad=True), tensor(params[names[-1]], grad=True)
    torch_loss = classifier_loss(last, W, b, labels)
    torch_loss.backward()
    theirs = {**module_grads(), names[-2]: W.grad.numpy(), names[-1]: b.grad.numpy()}
    if table is not None:
        theirs[list(params)[0]] = table.grad.numpy()  # the sequence's dL/dX, scattered to the rows
    assert_agrees(loss, grads, torch_loss, theirs, spec)
    if family != "gru":  # torch's two biases each get symprop's one bias's gradient
        assert relative_error(grads[names[2]], module.bias_hh_l0.grad.numpy()) < TORCH_TOLERANCE, spec


# ---- attention against torch ops and nn.MultiheadAttention ------------------------------------
def causal_mask(tokens):
    """True where a query may not look: the keys after it."""
    return torch.triu(torch.ones(tokens, tokens, dtype=torch.bool), diagonal=1)


def torch_head(xs, Wq, Wk, Wv, causal):
    """One head by torch ops: softmax(Q K^T / sqrt(dk)) V, masked scores -inf."""
    Q, K, V = xs @ Wq, xs @ Wk, xs @ Wv
    scores = Q @ K.transpose(1, 2) / np.sqrt(Wq.shape[1])
    if causal:
        scores = scores.masked_fill(causal_mask(xs.shape[1]), float("-inf"))
    return torch.softmax(scores, dim=-1) @ V


def _attention_sizes(rng):
    return (int(v) for v in rng.integers(1, 4, 4))


@pytest.mark.parametrize("op", ["attention", "causal-attention"])
@pytest.mark.parametrize("tokens", [1, 2, 5])
def test_one_head_agrees_with_torch_ops(op, tokens, rng):
    inputs, keys, values, classes = _attention_sizes(rng)
    spec = (f"{op}({inputs},{keys},{values},{tokens}) flatten affine({tokens * values},{classes + 1}) "
            "softmax-cross-entropy")
    params, X, labels, loss, grads = symprop_loss_and_grads(spec, rng)
    leaves = {name: tensor(value, grad=True) for name, value in params.items()}
    Wq, Wk, Wv, W, b = leaves.values()
    out = torch_head(tensor(X).reshape(X.shape[0], tokens, inputs), Wq, Wk, Wv, op == "causal-attention")
    torch_loss = classifier_loss(out.reshape(X.shape[0], -1), W, b, labels)
    torch_loss.backward()
    assert_agrees(loss, grads, torch_loss, {name: leaf.grad.numpy() for name, leaf in leaves.items()}, spec)


@pytest.mark.parametrize("first, second", [("causal-attention", "attention"), ("attention", "causal-attention")])
@pytest.mark.parametrize("tokens", [1, 4])
def test_stacked_heads_carry_dl_dx_as_torch_does(first, second, tokens, rng):
    """The first head's gradients read the second head's dL/dX (query, key and value paths)."""
    inputs, keys, values, classes = _attention_sizes(rng)
    keys2, values2 = (int(v) for v in rng.integers(1, 4, 2))
    spec = (f"{first}({inputs},{keys},{values},{tokens}) {second}({values},{keys2},{values2},{tokens}) flatten "
            f"affine({tokens * values2},{classes + 1}) softmax-cross-entropy")
    params, X, labels, loss, grads = symprop_loss_and_grads(spec, rng)
    leaves = {name: tensor(value, grad=True) for name, value in params.items()}
    Wq1, Wk1, Wv1, Wq2, Wk2, Wv2, W, b = leaves.values()
    hidden = torch_head(tensor(X).reshape(X.shape[0], tokens, inputs), Wq1, Wk1, Wv1, first == "causal-attention")
    out = torch_head(hidden, Wq2, Wk2, Wv2, second == "causal-attention")
    torch_loss = classifier_loss(out.reshape(X.shape[0], -1), W, b, labels)
    torch_loss.backward()
    assert_agrees(loss, grads, torch_loss, {name: leaf.grad.numpy() for name, leaf in leaves.items()}, spec)


@pytest.mark.parametrize("op", ["attention", "causal-attention"])
@pytest.mark.parametrize("tokens", [1, 3])
def test_one_head_agrees_with_torch_multihead_attention(op, tokens, rng):
    """nn.MultiheadAttention with one head maps exactly when dk = dv = D (its in_proj_weight
    stacks Wq^T, Wk^T, Wv^T, each E x E, and it scales by 1/sqrt(E)), with bias=False and its
    output projection fixed to the identity (symprop's head has none; its gradient is not
    compared). The causal mask is its boolean attn_mask, True above the diagonal."""
    width, classes = (int(v) for v in rng.integers(1, 4, 2))
    spec = (f"{op}({width},{width},{width},{tokens}) flatten affine({tokens * width},{classes + 1}) "
            "softmax-cross-entropy")
    params, X, labels, loss, grads = symprop_loss_and_grads(spec, rng)
    Wq, Wk, Wv, Wname, bname = params
    module = nn.MultiheadAttention(width, num_heads=1, bias=False, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        module.in_proj_weight.copy_(tensor(np.concatenate([params[Wq].T, params[Wk].T, params[Wv].T])))
        module.out_proj.weight.copy_(torch.eye(width, dtype=torch.float64))
    xs = tensor(X).reshape(X.shape[0], tokens, width)
    mask = causal_mask(tokens) if op == "causal-attention" else None
    out, _ = module(xs, xs, xs, attn_mask=mask, need_weights=False)
    W, b = tensor(params[Wname], grad=True), tensor(params[bname], grad=True)
    torch_loss = classifier_loss(out.reshape(X.shape[0], -1), W, b, labels)
    torch_loss.backward()
    dq, dk, dv = module.in_proj_weight.grad.numpy().reshape(3, width, width)
    theirs = {Wq: dq.T, Wk: dk.T, Wv: dv.T, Wname: W.grad.numpy(), bname: b.grad.numpy()}
    assert_agrees(loss, grads, torch_loss, theirs, spec)


# ---- the multi-head block against nn.MultiheadAttention, the residual and nn.LayerNorm ---------
def torch_block(causal, width, heads, params, names, sequence):
    """nn.MultiheadAttention (batch_first, with biases) then x + its output and nn.LayerNorm, with
    symprop's parameters copied in. torch computes y = x W^T + b, so in_proj_weight stacks Wq^T,
    Wk^T, Wv^T and in_proj_bias bq, bk, bv; out_proj holds Wo^T and bo; the norm's weight and
    bias are symprop's scale and shift (eps 1e-5 in both). Returns y and a function giving
    torch's gradients under symprop's names."""
    Wq, bq, Wk, bk, Wv, bv, Wo, bo, g, b = names
    attention = nn.MultiheadAttention(width, heads, bias=True, batch_first=True, dtype=torch.float64)
    norm = nn.LayerNorm(width, dtype=torch.float64)
    with torch.no_grad():
        attention.in_proj_weight.copy_(tensor(np.concatenate([params[Wq].T, params[Wk].T, params[Wv].T])))
        attention.in_proj_bias.copy_(tensor(np.concatenate([params[bq], params[bk], params[bv]])))
        attention.out_proj.weight.copy_(tensor(params[Wo].T))
        attention.out_proj.bias.copy_(tensor(params[bo]))
        norm.weight.copy_(tensor(params[g]))
        norm.bias.copy_(tensor(params[b]))
    mask = causal_mask(sequence.shape[1]) if causal else None
    out, _ = attention(sequence, sequence, sequence, attn_mask=mask, need_weights=False)

    def grads():
        dW = attention.in_proj_weight.grad.numpy().reshape(3, width, width)
        db = attention.in_proj_bias.grad.numpy().reshape(3, width)
        return {Wq: dW[0].T, Wk: dW[1].T, Wv: dW[2].T, bq: db[0], bk: db[1], bv: db[2],
                Wo: attention.out_proj.weight.grad.numpy().T, bo: attention.out_proj.bias.grad.numpy(),
                g: norm.weight.grad.numpy(), b: norm.bias.grad.numpy()}
    return norm(sequence + out), grads


def test_multihead_block_agrees_with_torch_modules(rng):
    """The loss and every gradient of a causal block of several heads, dL/dX included: an
    embedding before the block turns it into the table's gradient. Random sizes (T = 1 is
    checked by central differences on a transcript, tests/test_multihead.py: one compiled
    network here keeps this lean). The key bias's gradient is exactly zero (q . bk shifts every
    score of a row alike, which the softmax ignores), so both are checked to be zero to rounding
    instead of relatively."""
    heads, head_width, classes, vocabulary = (int(v) for v in rng.integers(1, 4, 4))
    heads, head_width = heads % 2 + 2, head_width % 2 + 2  # several heads, each wide enough that 1/sqrt(dh) != 1
    width, vocabulary, tokens = heads * head_width, vocabulary + 1, int(rng.integers(2, 5))
    spec = (f"embedding({vocabulary},{width},{tokens}) causal-mha({width},{heads},{tokens}) flatten "
            f"affine({tokens * width},{classes + 1}) softmax-cross-entropy")
    params, X, labels, loss, grads = symprop_loss_and_grads(spec, rng, vocabulary)
    table_name, *names = params
    table = tensor(params[table_name], grad=True)
    sequence = F.embedding(torch.tensor(X.astype(np.int64)), table)
    y, block_grads = torch_block(True, width, heads, params, names[:-2], sequence)
    W, b = tensor(params[names[-2]], grad=True), tensor(params[names[-1]], grad=True)
    torch_loss = classifier_loss(y.reshape(X.shape[0], -1), W, b, labels)
    torch_loss.backward()
    theirs = {**block_grads(), names[-2]: W.grad.numpy(), names[-1]: b.grad.numpy(),
              table_name: table.grad.numpy()}  # the table's: the block's dL/dX, scattered to the rows
    key_bias = names[3]
    assert np.abs(grads.pop(key_bias)).max() < 1e-14 and np.abs(theirs.pop(key_bias)).max() < 1e-14, spec
    assert_agrees(loss, grads, torch_loss, theirs, spec)
