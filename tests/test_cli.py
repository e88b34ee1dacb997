"""The symprop command: derive, generate --check, demo; errors as one line with exit 2."""
import json
import subprocess
import sys
from pathlib import Path

import sympy as sp

from symprop.cli import main
from symprop.symbolic.render import PARSE_LOCALS

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "symprop", *args], capture_output=True, text=True, cwd=ROOT)


def test_derive_sigmoid_json_rule_parses_back_to_dout_y_one_minus_y(capsys):
    assert main(["derive", "sigmoid", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rule = sp.sympify(data["backward"]["dx"]["sympy"], locals=PARSE_LOCALS)
    dout, y = sp.Symbol("dout", real=True), sp.Symbol("y", real=True)
    assert sp.simplify(rule - dout * y * (1 - y)) == 0
    assert data["saved"] == ["y"]
    assert all("latex" in step["rhs"] for step in data["steps"])


def test_derive_softmax_cross_entropy_shows_y_minus_t_over_n(capsys):
    assert main(["derive", "softmax-cross-entropy"]) == 0
    out = capsys.readouterr().out
    assert "dz[j] = (-t[j] + y[j])/N" in out
    assert "sum_k t[k] = 1" in out


def test_derive_markdown_has_balanced_math(capsys):
    assert main(["derive", "affine", "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert out.count("$$") % 2 == 0 and out.replace("$$", "").count("$") % 2 == 0
    assert r"W^{T}" in out


def test_derive_custom_formula(capsys):
    assert main(["derive", "--formula", "x*tanh(log(1+exp(x)))"]) == 0
    out = capsys.readouterr().out
    assert "softplus(x)" in out and "sigmoid(x)" in out


def test_derive_list_names_every_layer(capsys):
    from symprop.symbolic.layers import REGISTRY
    assert main(["derive", "--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(REGISTRY)


def test_unknown_layer_lists_known_ones_and_exits_2():
    result = run_cli("derive", "swish")
    assert result.returncode == 2
    assert "unknown layer 'swish'" in result.stderr and "sigmoid" in result.stderr
    assert "Traceback" not in result.stderr


def test_hostile_formula_is_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"
    result = run_cli("derive", "--formula", f"__import__('os').system('touch {marker}')")
    assert result.returncode == 2 and "not allowed" in result.stderr
    assert not marker.exists()


def test_generate_net_writes_a_module(tmp_path):
    target = tmp_path / "net.py"
    result = run_cli("generate", "--net", "affine(3,2) relu affine(2,2) softmax-cross-entropy", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert "def sgd_step_kernel(W1, b1, W2, b2, X, T, lr)" in target.read_text()
    bad = run_cli("generate", "--net", "affine(3,2) relu affine(4,2) mse")
    assert bad.returncode == 2 and "layer 3" in bad.stderr


def test_generate_check_is_clean_on_the_repository():
    result = run_cli("generate", "--check")
    assert result.returncode == 0, result.stdout[-3000:]


# `symprop demo` runs once in the suite, from a bare install: tests/test_core_install.py
