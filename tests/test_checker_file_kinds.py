"""The same small network written as a network file, a net file and a graph file, with the
same five learner mistakes: each file kind gets the same diagnosis code for each mistake.

The learner's wrong numbers are computed here with mpmath, step by step as the learner made
them, never taken from symprop.
"""
from __future__ import annotations

import mpmath
import pytest

from symprop.symbolic.checker import check, claim_from
from symprop.symbolic.formula import parse_formula
from symprop.symbolic.ops.elementwise import Elementwise
from symprop.symbolic.ops.expression import Expression
from symprop.symbolic.rule_conventions import has_kink, node_has_kink, node_reads_its_output, reads_its_output

NETWORK = """
title = "tiny"
loss = "squared-error"
learning_rate = 0.5
update_biases = true
[inputs]
x = 0.5
[targets]
t = 0.2
[[layers]]
units = ["h"]
activation = "sigmoid"
weight_names = [["w1"]]
weights = [[0.4]]
bias_names = "b1"
bias = 0.1
[[layers]]
units = ["y"]
activation = "sigmoid"
weight_names = [["w2"]]
weights = [[0.7]]
bias_names = "b2"
bias = -0.3
"""

NET = """
title = "tiny"
net = "affine(1,1) sigmoid affine(1,1) sigmoid squared-error"
[values]
X = [[0.5]]
T = [[0.2]]
W1 = [[0.4]]
b1 = [0.1]
W2 = [[0.7]]
b2 = [-0.3]
learning_rate = 0.5
"""

GRAPH = """
title = "tiny"
output = "y"
loss = "E"
[inputs]
x = 0.5
t = 0.2
[parameters]
w1 = 0.4
b1 = 0.1
w2 = 0.7
b2 = -0.3
[nodes]
zh = "w1 * x + b1"
h = "sigmoid(zh)"
zy = "w2 * h + b2"
y = "sigmoid(zy)"
E = "(y - t)^2 / 2"
[update]
learning_rate = 0.5
"""

# what each quantity is called in each file kind
NAMES = {
    "network": {"dE/dy": "dE/dy", "dE/dw1": "dE/dw1", "dE/dw2": "dE/dw2", "w2_new": "w2_new"},
    "net": {"dE/dy": "dL/dh2[0,0]", "dE/dw1": "dL/dW1[0,0]", "dE/dw2": "dL/dW2[0,0]", "w2_new": "W2_new[0,0]"},
    "graph": {"dE/dy": "dE/dy", "dE/dw1": "dE/dw1", "dE/dw2": "dE/dw2", "w2_new": "w2_new"},
}
FILES = {"network": NETWORK, "net": NET, "graph": GRAPH}


def learner(mistake: str) -> tuple[str, mpmath.mpf]:
    """The quantity the learner got wrong and their number, worked the way they worked it."""
    with mpmath.workdps(50):
        m = mpmath.mpf
        x, t, w1, b1, w2, b2, lr = m("0.5"), m("0.2"), m("0.4"), m("0.1"), m("0.7"), m("-0.3"), m("0.5")
        sigmoid = lambda u: 1 / (1 + mpmath.exp(-u))  # noqa: E731
        zh = w1 * x + b1
        h = sigmoid(zh)
        zy = w2 * h + b2
        y = sigmoid(zy)
        dy = y * (1 - y)
        if mistake == "forgot the 1/2":
            return "dE/dy", 2 * (y - t)
        if mistake == "forgot the sigmoid derivative":
            return "dE/dw2", (y - t) * h
        if mistake == "sigmoid' at the net input":
            return "dE/dw2", (y - t) * zy * (1 - zy) * h
        dw2 = (y - t) * dy * h
        if mistake == "gradient ascent":
            return "w2_new", w2 + lr * dw2
        if mistake == "used the updated w2":
            w2_new = w2 - lr * dw2
            return "dE/dw1", (y - t) * dy * w2_new * h * (1 - h) * x
    raise KeyError(mistake)


MISTAKES = {
    "forgot the 1/2": "convention_loss_no_half",
    "forgot the sigmoid derivative": "forgot_sigmoid_derivative",
    "sigmoid' at the net input": "convention_sigmoid_at_net",
    "gradient ascent": "convention_gradient_ascent",
    "used the updated w2": "convention_updated_weights",
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kinds")
    paths = {}
    for kind, text in FILES.items():
        paths[kind] = folder / f"tiny-{kind}.toml"
        paths[kind].write_text(text)
    return paths


@pytest.mark.parametrize("kind", FILES)
@pytest.mark.parametrize("mistake", MISTAKES)
def test_same_mistake_same_code_in_every_file_kind(files, kind, mistake):
    quantity, number = learner(mistake)
    name = NAMES[kind][quantity]
    report = check(str(files[kind]), [claim_from(name, mpmath.nstr(number, 9, min_fixed=-9, max_fixed=9), "test")])
    assert not report.problems, report.problems
    (verdict,) = report.verdicts
    assert not verdict.right
    assert verdict.code == MISTAKES[mistake], (kind, mistake, verdict.code, [d.en for d in verdict.diagnoses])


@pytest.mark.parametrize("kind", FILES)
def test_the_right_numbers_are_right_in_every_file_kind(files, kind):
    """The same network in each file: the exact values agree (so the mistakes above are the
    same mistakes), and an unmistaken learner is right."""
    with mpmath.workdps(50):
        sigmoid = lambda u: 1 / (1 + mpmath.exp(-u))  # noqa: E731
        h = sigmoid(mpmath.mpf("0.4") * mpmath.mpf("0.5") + mpmath.mpf("0.1"))
        y = sigmoid(mpmath.mpf("0.7") * h - mpmath.mpf("0.3"))
        dw2 = (y - mpmath.mpf("0.2")) * y * (1 - y) * h
    claims = [claim_from(NAMES[kind]["dE/dw2"], mpmath.nstr(dw2, 12), "test")]
    assert check(str(files[kind]), claims).all_right


# --- the conventions that change a rule: relu'(0) from the right, a rule in the output at the net input

RULE_NETWORK = """
title = "rule"
loss = "squared-error"
learning_rate = 0.5
update_biases = true
[inputs]
x = 0.5
[targets]
t = 0.2
[[layers]]
units = ["h"]
activation = "{activation}"
weight_names = [["w1"]]
weights = [[{w1}]]
bias_names = "b1"
bias = {b1}
[[layers]]
units = ["y"]
activation = "sigmoid"
weight_names = [["w2"]]
weights = [[0.7]]
bias_names = "b2"
bias = -0.3
"""

RULE_NET = """
title = "rule"
net = "affine(1,1) {activation} affine(1,1) sigmoid squared-error"
[values]
X = [[0.5]]
T = [[0.2]]
W1 = [[{w1}]]
b1 = [{b1}]
W2 = [[0.7]]
b2 = [-0.3]
learning_rate = 0.5
"""

RULE_GRAPH = """
title = "rule"
output = "y"
loss = "E"
[inputs]
x = 0.5
t = 0.2
[parameters]
w1 = {w1}
b1 = {b1}
w2 = 0.7
b2 = -0.3
[nodes]
zh = "w1 * x + b1"
h = "{activation}(zh)"
zy = "w2 * h + b2"
y = "sigmoid(zy)"
E = "(y - t)^2 / 2"
[update]
learning_rate = 0.5
"""

RULE_FILES = {"network": RULE_NETWORK, "net": RULE_NET, "graph": RULE_GRAPH}
RULE_NAMES = {
    "network": {"dE/dw1": "dE/dw1", "dh/dzh": "dh/dnet_h"},
    "net": {"dE/dw1": "dL/dW1[0,0]", "dh/dzh": "dh1[0,0]/dz1[0,0]"},
    "graph": {"dE/dw1": "dE/dw1", "dh/dzh": "dh/dzh"},
}
# mistake -> (hidden activation, w1, b1, the quantity claimed, the code every file kind gives)
RULE_MISTAKES = {
    "relu'(0) = 1, in the gradient": ("relu", "0.4", "-0.2", "dE/dw1", "convention_relu0"),
    "relu'(0) = 1, the local derivative": ("relu", "0.4", "-0.2", "dh/dzh", "convention_relu0"),
    "sigmoid' at the net input, both layers": ("sigmoid", "0.4", "0.1", "dE/dw1", "convention_sigmoid_at_net"),
    "tanh' and sigmoid' at the net input": ("tanh", "0.37", "0.11", "dE/dw1", "convention_sigmoid_at_net"),
    "tanh' at the net input, the local derivative": ("tanh", "0.37", "0.11", "dh/dzh", "convention_sigmoid_at_net"),
}


def rule_learner(mistake: str | None, activation: str, w1: str, b1: str, quantity: str) -> mpmath.mpf:
    """The learner's number (``mistake`` None: the right one), worked step by step in mpmath:
    relu'(0) taken as 1, or each derivative written in the output (y(1 - y), 1 - y^2)
    evaluated at its net input instead."""
    with mpmath.workdps(50):
        m = mpmath.mpf
        x, t, w2, b2 = m("0.5"), m("0.2"), m("0.7"), m("-0.3")
        sigmoid = lambda u: 1 / (1 + mpmath.exp(-u))  # noqa: E731
        zh = m(w1) * x + m(b1)
        h = {"relu": lambda u: max(u, m(0)), "sigmoid": sigmoid, "tanh": mpmath.tanh}[activation](zh)
        zy = w2 * h + b2
        y = sigmoid(zy)
        at_net = mistake is not None and "net input" in mistake
        dy_dzy = zy * (1 - zy) if at_net else y * (1 - y)
        if activation == "relu":
            assert zh == 0  # exactly at the kink: the derivation's relu'(0) is 0
            dh_dzh = m(1) if mistake is not None else m(1 if zh > 0 else 0)
        elif activation == "sigmoid":
            dh_dzh = zh * (1 - zh) if at_net else h * (1 - h)
        else:
            dh_dzh = 1 - zh ** 2 if at_net else 1 - h ** 2
        if quantity == "dh/dzh":
            return dh_dzh
        return (y - t) * dy_dzy * w2 * dh_dzh * x


def _rule_file(folder, kind, activation, w1, b1):
    path = folder / f"rule-{activation}-{kind}.toml"
    path.write_text(RULE_FILES[kind].format(activation=activation, w1=w1, b1=b1))
    return str(path)


@pytest.mark.parametrize("kind", RULE_FILES)
@pytest.mark.parametrize("mistake", RULE_MISTAKES)
def test_a_changed_rule_gets_the_same_code_in_every_file_kind(tmp_path, kind, mistake):
    """relu'(0) = 1 at a pre-activation exactly 0, and a derivative written in the output taken
    at the net input (sigmoid, tanh): each file kind offers the convention as a variant of the
    rules its lowering reads, so each gives the same code."""
    activation, w1, b1, quantity, code = RULE_MISTAKES[mistake]
    number = rule_learner(mistake, activation, w1, b1, quantity)
    assert number != rule_learner(None, activation, w1, b1, quantity)
    claim = claim_from(RULE_NAMES[kind][quantity], mpmath.nstr(number, 9, min_fixed=-9, max_fixed=9), "test")
    report = check(_rule_file(tmp_path, kind, activation, w1, b1), [claim])
    assert not report.problems, report.problems
    (verdict,) = report.verdicts
    assert not verdict.right
    assert verdict.code == code, (kind, mistake, verdict.code, [d.en for d in verdict.diagnoses])


@pytest.mark.parametrize("kind", RULE_FILES)
@pytest.mark.parametrize("activation, w1, b1", sorted({case[:3] for case in RULE_MISTAKES.values()}))
def test_the_rule_networks_right_numbers_are_right_in_every_file_kind(tmp_path, kind, activation, w1, b1):
    """The same network in each file (relu'(0) = 0 as derived): an unmistaken learner is right."""
    claims = [claim_from(RULE_NAMES[kind][q], mpmath.nstr(rule_learner(None, activation, w1, b1, q), 12), "test")
              for q in ("dE/dw1", "dh/dzh")]
    report = check(_rule_file(tmp_path, kind, activation, w1, b1), claims)
    assert report.all_right, [(v.key, v.code) for v in report.verdicts]


# --- a loss taken as another: the mean of squared errors worked as 1/2 their sum

MSE_FILES = {"network": NETWORK.replace('loss = "squared-error"', 'loss = "mse"'),
             "net": NET.replace("sigmoid squared-error", "sigmoid mse")}


@pytest.mark.parametrize("kind", MSE_FILES)
def test_a_loss_taken_as_another_gets_the_same_code_in_network_and_net_files(tmp_path, kind):
    """The loss is the mean of the squared errors, (y - t)^2 for one output; the learner took
    1/2 (y - t)^2. A network file's loss field and a net spec's loss op get the same variants.
    (A graph file writes its loss as a formula: that learner's number is a factor of 1/2 there.)"""
    assert MSE_FILES[kind] != FILES[kind]
    with mpmath.workdps(50):
        m = mpmath.mpf
        x, t, w1, b1, w2, b2 = m("0.5"), m("0.2"), m("0.4"), m("0.1"), m("0.7"), m("-0.3")
        sigmoid = lambda u: 1 / (1 + mpmath.exp(-u))  # noqa: E731
        h = sigmoid(w1 * x + b1)
        y = sigmoid(w2 * h + b2)
        dE_dy = y - t  # d/dy of 1/2 (y - t)^2, not of (y - t)^2
        number = dE_dy * y * (1 - y) * w2 * h * (1 - h) * x
    path = tmp_path / f"mse-{kind}.toml"
    path.write_text(MSE_FILES[kind])
    report = check(str(path), [claim_from(NAMES[kind]["dE/dw1"], mpmath.nstr(number, 9), "test")])
    assert not report.problems, report.problems
    (verdict,) = report.verdicts
    assert not verdict.right and verdict.code == "convention_loss_half_sum", (verdict.code, verdict.diagnoses)


# --- biases kept fixed: all of them, or one

BIAS_FILES = {"network": NETWORK, "net": NET.replace('title = "tiny"', 'title = "tiny"\nforward_after_step = true')}
BIAS_MISTAKES = {"biases not updated": ("b1", "b2"), "b2 kept fixed": ("b2",)}
BIAS_CODES = {"biases not updated": "convention_biases_not_updated", "b2 kept fixed": "convention_some_biases_fixed"}


@pytest.mark.parametrize("kind", BIAS_FILES)
@pytest.mark.parametrize("mistake", BIAS_MISTAKES)
def test_biases_kept_fixed_get_the_same_code_in_network_and_net_files(tmp_path, kind, mistake):
    """The loss after the step, worked with some biases not updated: a network file's biases
    and a net spec's (each affine layer's b) get the same variants. (A graph file's parameters
    are not marked as biases: that learner's number is a mistake in this step there.)"""
    fixed = BIAS_MISTAKES[mistake]
    with mpmath.workdps(50):
        m = mpmath.mpf
        x, t, w1, b1, w2, b2, lr = m("0.5"), m("0.2"), m("0.4"), m("0.1"), m("0.7"), m("-0.3"), m("0.5")
        sigmoid = lambda u: 1 / (1 + mpmath.exp(-u))  # noqa: E731
        h = sigmoid(w1 * x + b1)
        y = sigmoid(w2 * h + b2)
        dE_dzy = (y - t) * y * (1 - y)
        dE_dzh = dE_dzy * w2 * h * (1 - h)
        w1, w2 = w1 - lr * dE_dzh * x, w2 - lr * dE_dzy * h
        b1 = b1 if "b1" in fixed else b1 - lr * dE_dzh
        b2 = b2 if "b2" in fixed else b2 - lr * dE_dzy
        y = sigmoid(w2 * sigmoid(w1 * x + b1) + b2)
        loss_after = (y - t) ** 2 / 2
    path = tmp_path / f"bias-{kind}.toml"
    path.write_text(BIAS_FILES[kind])
    key = {"network": "E_new", "net": "L_new"}[kind]
    report = check(str(path), [claim_from(key, mpmath.nstr(loss_after, 9), "test")])
    assert not report.problems, report.problems
    (verdict,) = report.verdicts
    assert not verdict.right and verdict.code == BIAS_CODES[mistake], (verdict.code, verdict.diagnoses)


@pytest.mark.parametrize("formula, kink, reads_output", [
    ("relu(u)", True, False), ("max(u/10, u)", True, False), ("min(u, 0)", True, False), ("abs(u)", False, False),
    ("sigmoid(u)", False, True), ("tanh(u)", False, True), ("exp(u)", False, True),
    ("softplus(u)", False, False), ("u*sigmoid(u)", False, False), ("u^2", False, False),
])
def test_a_graph_node_and_the_same_layer_offer_the_same_conventions(formula, kink, reads_output):
    """The two questions that decide which rule-changing conventions are offered, asked of a
    graph file's node and of a network's activation with the same formula, agree."""
    node = Expression(parse_formula(formula, ("u",)), formula, ("u",))
    layer = Elementwise("test-activation", formula, "a test activation", inputs=("u",))
    assert (node_has_kink(node), node_reads_its_output(node)) == (kink, reads_output)
    assert (has_kink(layer), reads_its_output(layer)) == (kink, reads_output)
