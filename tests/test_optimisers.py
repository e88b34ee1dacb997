"""The update rules of symbolic/steps.py and their fused training steps (codegen/optimizer_steps.py).

Each generated step is checked over 10 steps against a plain-numpy reference written here from
torch.optim's documented algorithms (independent of the SymPy formulas), and against
torch.optim's own trajectories where torch is installed. The network's gradients come from its
kernel's loss_and_grads, which tests/test_networks.py checks against central differences.
"""
from pathlib import Path

import numpy as np
import pytest

from symprop.cli import main
from symprop.codegen.network import load_network
from symprop.symbolic.errors import SympropError
from symprop.symbolic.examples import EXAMPLES
from symprop.symbolic.network_transcript import network_transcript
from symprop.symbolic.networkfile import parse_network
from symprop.symbolic.steps import RULES, rule_named

SPEC = "affine(3,4) tanh affine(4,2) mse"
STEPS = 10
# hyper-parameters away from the defaults (and a learning rate large enough to move the net)
HYPER = {
    "sgd": dict(lr=0.3),
    "momentum": dict(lr=0.1, momentum=0.8),
    "nesterov": dict(lr=0.1, momentum=0.7),
    "adagrad": dict(lr=0.05, eps=1e-6),
    "rmsprop": dict(lr=0.01, alpha=0.9, eps=1e-6),
    "adam": dict(lr=0.02, beta1=0.8, beta2=0.95, eps=1e-6),
}


@pytest.fixture(scope="module")
def net():
    return load_network(SPEC)


def problem(seed=7):
    rng = np.random.default_rng(seed)
    params = [rng.normal(0, 0.7, shape) for shape in ((3, 4), (4,), (4, 2), (2,))]
    X, T = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    return params, X, T


def reference_step(name, hyper, params, grads, state, step):
    """One step of torch.optim's algorithm for `name`, in numpy, in place (state: a dict)."""
    lr, wd = hyper["lr"], hyper.get("weight_decay", 0.0)
    for k, (p, g) in enumerate(zip(params, grads)):
        g = g + wd * p
        if name == "sgd":
            p -= lr * g
        elif name in ("momentum", "nesterov"):
            buf = state.setdefault(k, np.zeros_like(p))
            buf *= hyper["momentum"]
            buf += g
            p -= lr * (g + hyper["momentum"] * buf if name == "nesterov" else buf)
        elif name == "adagrad":
            total = state.setdefault(k, np.zeros_like(p))
            total += g * g
            p -= lr * g / (np.sqrt(total) + hyper["eps"])
        elif name == "rmsprop":
            avg = state.setdefault(k, np.zeros_like(p))
            avg *= hyper["alpha"]
            avg += (1 - hyper["alpha"]) * g * g
            p -= lr * g / (np.sqrt(avg) + hyper["eps"])
        elif name == "adam":
            m, v = state.setdefault(k, (np.zeros_like(p), np.zeros_like(p)))
            m *= hyper["beta1"]
            m += (1 - hyper["beta1"]) * g
            v *= hyper["beta2"]
            v += (1 - hyper["beta2"]) * g * g
            step_size = lr / (1 - hyper["beta1"] ** step)
            p -= step_size * m / (np.sqrt(v) / np.sqrt(1 - hyper["beta2"] ** step) + hyper["eps"])
        else:
            raise AssertionError(name)


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("name", list(RULES))
def test_generated_step_equals_numpy_reference_over_10_steps(net, name, weight_decay):
    hyper = dict(HYPER[name], weight_decay=weight_decay)
    params, X, T = problem()
    reference = [p.copy() for p in params]
    init, step, defaults = net.OPTIMIZERS[name]
    assert set(defaults) == set(hyper)
    state = init(*params)
    reference_state = {}
    for k in range(1, STEPS + 1):
        loss_before, *grads = net.loss_and_grads(*reference, X, T)
        loss = step(*params, state, X, T, **hyper)
        reference_step(name, hyper, reference, grads, reference_state, k)
        assert loss == pytest.approx(loss_before, rel=1e-12)
        for mine, theirs in zip(params, reference):
            np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-15)
    moved = [np.abs(p - q).max() for p, q in zip(params, problem()[0])]
    assert min(moved) > 1e-3  # the steps did something: the comparison is not of unchanged arrays
    if RULES[name].counts_steps:
        assert state[-1][0] == STEPS


def test_float32_step_stays_float32_and_close_to_float64(net):
    params, X, T = problem()
    single = [p.astype(np.float32) for p in params]
    state64, state32 = net.init_state_adam(*params), net.init_state_adam(*single)
    for _ in range(3):
        net.train_step_adam(*params, state64, X, T, lr=0.01)
        net.train_step_adam(*single, state32, X.astype(np.float32), T.astype(np.float32), lr=0.01)
    assert all(p.dtype == np.float32 for p in single) and state32[0].dtype == np.float32
    for a, b in zip(single, params):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-5)


def test_torch_optim_trajectories_agree_over_10_steps(net):
    torch = pytest.importorskip("torch", reason="the torch.optim comparison needs PyTorch (not a test extra)")
    makers = {
        "sgd": lambda ps, h: torch.optim.SGD(ps, lr=h["lr"], weight_decay=h["weight_decay"]),
        "momentum": lambda ps, h: torch.optim.SGD(ps, lr=h["lr"], momentum=h["momentum"],
                                                  weight_decay=h["weight_decay"]),
        "nesterov": lambda ps, h: torch.optim.SGD(ps, lr=h["lr"], momentum=h["momentum"], nesterov=True,
                                                  weight_decay=h["weight_decay"]),
        "adagrad": lambda ps, h: torch.optim.Adagrad(ps, lr=h["lr"], eps=h["eps"], weight_decay=h["weight_decay"]),
        "rmsprop": lambda ps, h: torch.optim.RMSprop(ps, lr=h["lr"], alpha=h["alpha"], eps=h["eps"],
                                                     weight_decay=h["weight_decay"]),
        "adam": lambda ps, h: torch.optim.Adam(ps, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"],
                                               weight_decay=h["weight_decay"]),
    }
    assert set(makers) == set(RULES)
    for name, make in makers.items():
        for weight_decay in (0.0, 0.05):
            hyper = dict(HYPER[name], weight_decay=weight_decay)
            params, X, T = problem(seed=11)
            theirs = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]
            optimizer = make(theirs, hyper)
            Xt, Tt = torch.tensor(X), torch.tensor(T)
            state = net.OPTIMIZERS[name][0](*params)
            for _ in range(STEPS):
                optimizer.zero_grad()
                W1, b1, W2, b2 = theirs
                loss = torch.nn.functional.mse_loss(torch.tanh(Xt @ W1 + b1) @ W2 + b2, Tt)
                loss.backward()
                optimizer.step()
                mine = net.OPTIMIZERS[name][1](*params, state, X, T, **hyper)
                assert mine == pytest.approx(loss.item(), rel=1e-10), name
            for p, q in zip(params, theirs):
                np.testing.assert_allclose(p, q.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_step_arguments_are_checked(net):
    params, X, T = problem()
    state = net.init_state_adam(*params)
    for bad, message in [(dict(beta1=1.0), r"beta1 must be in \[0, 1\), got 1.0"),
                         (dict(lr=-0.1), r"lr must be in \(0, inf\)"),
                         (dict(eps=float("nan")), "eps must be in"),
                         (dict(weight_decay="0.1"), "weight_decay must be a number")]:
        with pytest.raises(ValueError, match=message):
            net.train_step_adam(*params, state, X, T, **bad)
    with pytest.raises(ValueError, match="state must be the tuple of 9 arrays"):
        net.train_step_adam(*params, net.init_state_momentum(*params), X, T)
    with pytest.raises(ValueError, match="state W1_m must be a writeable C-contiguous float64"):
        net.train_step_adam(*params, tuple(s.astype(np.float32) for s in state), X, T)
    with pytest.raises(ValueError, match="shares memory"):
        net.train_step_momentum(*params, (params[0], *net.init_state_momentum(*params)[1:]), X, T)
    with pytest.raises(TypeError):
        net.train_step_sgd(*params, (), X, T, momentum=0.9)


def test_rule_names_and_hyper_parameters_are_checked():
    with pytest.raises(SympropError, match=r"unknown optimizer 'adamw' \(known: sgd, momentum"):
        rule_named("adamw")
    with pytest.raises(SympropError, match="optimizer sgd has no hyper-parameter 'beta1'"):
        RULES["sgd"].check({"beta1": 0.9})
    with pytest.raises(SympropError, match=r"alpha must be in \[0, 1\]"):
        RULES["rmsprop"].check({"alpha": 1.5})
    assert RULES["adam"].check({}) == dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)


def test_defaults_are_torch_optims():
    torch = pytest.importorskip("torch", reason="reading torch.optim's defaults needs PyTorch")
    weight = [torch.zeros(1, requires_grad=True)]
    checks = {"sgd": (torch.optim.SGD(weight), {}), "adagrad": (torch.optim.Adagrad(weight), {}),
              "rmsprop": (torch.optim.RMSprop(weight), {}), "adam": (torch.optim.Adam(weight), {})}
    for name, (optimizer, _) in checks.items():
        theirs = optimizer.defaults
        ours = RULES[name].check({})
        if "betas" in theirs:
            theirs = dict(theirs, beta1=theirs["betas"][0], beta2=theirs["betas"][1])
        for key, value in ours.items():
            assert float(theirs[key]) == value, (name, key)


# ---- network files: the transcript's optimiser lines against the generated step ----------

ADAM_FILE = Path(__file__).resolve().parent.parent / "symbolic" / "networks" / "two-layer-sigmoid-adam.toml"


def with_optimizer(table: str, steps: int) -> str:
    text = ADAM_FILE.read_text(encoding="utf-8")
    start, end = text.index("[optimizer]"), text.index("[inputs]")
    return text[:start].replace("steps = 1", f"steps = {steps}") + table + "\n\n" + text[end:]


def kernel_params(network):
    _, values = network.to_graph()
    return [np.array(values[name], dtype=float).reshape(shape)
            for name, shape in (("W1", (2, 2)), ("b1", (1,)), ("W2", (2, 2)), ("b2", (1,)))]


def new_values(network, transcript, step):
    prefix = "" if step == 1 else f"step{step}:"
    return [np.array([[transcript.float_value(f"{prefix}{n}_new") for n in row] for row in layer.weight_names]
                     if is_weight else [transcript.float_value(f"{prefix}{layer.bias_names[0]}_new")])
            for layer in network.layers for is_weight in (True, False)]


@pytest.mark.parametrize("table, steps", [
    ('[optimizer]\nname = "adam"', 1),  # the shipped example's rule (its defaults)
    ('[optimizer]\nname = "adam"\nbeta1 = 0.8\nbeta2 = 0.99\neps = "1/1000"\nweight_decay = 0.01', 3),
    ('optimizer = { name = "nesterov", momentum = 0.5, weight_decay = 0.1 }', 2),
])
def test_transcript_optimizer_numbers_equal_the_kernels(table, steps):
    network = parse_network(with_optimizer(table, steps), "test.toml")
    transcript = network_transcript(network, "test")
    spec = network.to_graph()[0].spec
    kernel = load_network(spec)
    params = kernel_params(network)
    X = np.array([[float(v) for v in network.inputs]])
    T = np.array([[float(v) for v in network.targets]])
    init, train_step, _ = kernel.OPTIMIZERS[network.optimizer]
    state = init(*params)
    hyper = {name: float(value) for name, value in network.optimizer_settings.items()}
    for step in range(1, steps + 1):
        loss = train_step(*params, state, X, T, lr=float(network.learning_rate), **hyper)
        assert loss == pytest.approx(transcript.float_value("E" if step == 1 else f"step{step}:E"), rel=1e-12)
        for mine, theirs in zip(params, new_values(network, transcript, step)):
            # atol: Adam's first step takes a11 = 0.1 to 5.5e-7, a difference of numbers of size
            # 0.1, whose float64 rounding (1.4e-17) is 2.5e-11 of the result
            np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-15)
    if network.optimizer == "adam":  # the state too: m and v of the output weights after the last step
        prefix = "" if steps == 1 else f"step{steps}:"
        layer = network.layers[1]
        for moment, array in zip("mv", state[4:6]):
            expected = [[transcript.float_value(f"{prefix}{moment}[{n}]") for n in row] for row in layer.weight_names]
            np.testing.assert_allclose(array, expected, rtol=1e-12)
        assert state[-1][0] == steps == transcript.float_value(f"t[{steps}]")


def test_shipped_adam_example_shows_each_line_with_numbers():
    text = EXAMPLES["two-layer-sigmoid-adam"].build().render("text")
    assert "t[1] = 1 + t[0] = 1 + 0 = 1" in text
    assert "m[b11] = β1*m_0[b11] + dE/db11*(1 - β1) = 0.9*0 + 0.08392*(1 - 0.9) ≈ 0.008392" in text
    assert "b11_new = b11 - ρ*m_hat[b11]/(ε + sqrt(v_hat[b11]))" in text
    assert "β2 = 0.999" in text and "λ" not in text  # weight decay 0: not shown


@pytest.mark.parametrize("table, message", [
    ('optimizer = "adamw"', r"test.toml, line \d+, field 'optimizer': unknown optimizer 'adamw' \(known: sgd"),
    ('[optimizer]\nname = "adam"\nbeta1 = 1', r"line \d+, field 'optimizer.beta1': beta1 must be in \[0, 1\)"),
    ('[optimizer]\nname = "sgd"\nmomentum = 0.9', r"field 'optimizer.momentum': optimizer sgd has no hyper-parameter"),
    ('[optimizer]\nname = "adam"\nlr = 0.1', "the learning rate is the top-level field learning_rate"),
    ('[optimizer]\nbeta1 = 0.9', r"field 'optimizer.name': unknown optimizer None"),
    ('optimizer = 3', r"field 'optimizer': expected an optimizer name"),
])
def test_network_file_optimizer_mistakes_are_one_line(table, message):
    with pytest.raises(SympropError, match=message) as error:
        parse_network(with_optimizer(table, 1), "test.toml")
    assert "\n" not in str(error.value)


def test_cli_optimizer_mistakes_are_one_line(capsys):
    for argv, message in [
        (["--optimizer", "adamw"], "--optimizer: unknown optimizer 'adamw' (known: sgd, momentum, nesterov, "
                                   "adagrad, rmsprop, adam)"),
        (["--optimizer", "sgd", "--beta1", "0.9"], "--beta1 does not apply to --optimizer sgd (it takes --lr, "
                                                   "--weight-decay)"),
        (["--optimizer", "adam", "--beta2", "1"], "--optimizer adam: beta2 must be in [0, 1)"),
        (["--optimizer", "rmsprop", "--weight-decay", "-1"], "weight_decay must be in [0, inf)"),
    ]:
        assert main(["train", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_cli_trains_with_adam_and_weight_decay(capsys):
    status = main(["train", "--data", "moons", "--epochs", "2", "--no-progress", "--optimizer", "adam",
                   "--lr", "0.05", "--beta1", "0.8", "--weight-decay", "0.001"])
    out = capsys.readouterr().out
    assert status == 0
    assert "adam: 2 epochs, batch 32, lr 0.05, beta1 0.8, beta2 0.999, eps 1e-08, weight_decay 0.001" in out
    accuracy = float(out.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.75  # two moons with noise 0.4: logistic regression reaches about 0.8
