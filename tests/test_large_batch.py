"""Net-file transcripts of a large batch: the first rows exact, the sums over the batch in
float64 by the formulas of one row. The numbers must be the exact transcript's to float64
rounding, the file's values must be checked as strictly as in a small batch, and the checker
must check claims about the written rows and the sums without writing out every row."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from symprop.symbolic import graph_transcript as gt
from symprop.symbolic import large_batch
from symprop.symbolic.checker import check, load_claims
from symprop.symbolic.errors import SympropError
from symprop.symbolic.large_batch import EXACT_ROWS, MAX_MIXING_ROWS, SHOWN_ROWS
from symprop.symbolic.netfile import load_net_file, net_file_transcript
from symprop.symbolic.transcript import in_float32, rounding_intermediates

NETS = Path(__file__).resolve().parent.parent / "symbolic" / "nets"
FLOAT64_TOLERANCE = 1e-12  # relative (absolute below 1): float64 rounding of a few dozen terms is ~1e-16
FLOAT32_TOLERANCE = 1e-5  # relative: float32 rounds each operation to about 6e-8


def _rows(rows: int, width: int, seed: int = 0) -> list:
    return np.random.default_rng(seed).normal(size=(rows, width)).round(2).tolist()


def _one_hot(rows: int, classes: int, seed: int = 1) -> list:
    return np.eye(classes, dtype=int)[np.random.default_rng(seed).integers(0, classes, rows)].tolist()


def write_net(tmp_path, spec: str, values: dict, name: str = "big.toml", extra: str = "") -> Path:
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())  # JSON's lists and numbers are TOML
    path = tmp_path / name
    path.write_text(f'title = "a large batch"\nnet = "{spec}"\n{extra}\n[values]\n{body}\n')
    return path


# spec -> the values besides X (rows x 2 features unless the spec says otherwise) and T
CASES = {
    "affine(2,2) softmax-cross-entropy": dict(T="one-hot", W1=[[0.1, -0.2], [0.4, 0.5]], b1=[0.01, -0.02]),
    "affine(2,3) sigmoid affine(3,2) softmax-cross-entropy": dict(
        T="one-hot", W1=[[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]], b1=[0.01, -0.02, 0.03],
        W2=[[0.2, -0.1], [0.3, 0.1], [-0.5, 0.4]], b2=[0, 0.1]),
    "affine(2,3,l2=0.01) relu affine(3,1) mse": dict(
        T="column", W1=[[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]], b1=[0.01, -0.02, 0.03], W2=[[0.2], [-0.1], [0.3]],
        b2=[0.1]),
    "affine(2,1) binary-cross-entropy": dict(T="binary", W1=[[0.5], [-0.5]], b1=[0]),
    "affine(2,2) tanh affine(2,3) multiclass-hinge": dict(
        T="one-hot", W1=[[0.1, -0.2], [0.4, 0.5]], b1=[0, 0.1], W2=[[1, -1, 0.5], [0.3, 0.1, -0.2]], b2=[0, 0.1, 0]),
    "affine(2,2) dropout(0.5) affine(2,2) softmax affine(2,1) huber": dict(
        T="column", W1=[[0.1, -0.2], [0.4, 0.5]], b1=[0.01, -0.02], mask2="mask", W2=[[0.2, -0.1], [0.3, 0.1]],
        b2=[0, 0.1], W3=[[0.5], [-0.5]], b3=[0]),
    "affine(2,2) layernorm log-softmax-nll": dict(T="one-hot", W1=[[0.1, -0.2], [0.4, 0.5]], b1=[0.01, -0.02],
                                                  scale2=[1, 0.5], shift2=[0, 0.1]),
    "input(1,2,2) conv2d(1,1,1) maxpool(2,1) flatten squared-error": dict(T="column", W1=[[[[1.5]]]], b1=[0.1]),
}


def case_values(spec: str, rows: int) -> dict:
    values = dict(CASES[spec])
    classes = len(values[max(k for k in values if k.startswith("b"))])  # the last layer's biases
    values["X"] = (np.random.default_rng(0).integers(-3, 4, size=(rows, 1, 2, 2)).tolist() if spec.startswith("input")
                   else _rows(rows, 2))
    values["T"] = {"one-hot": lambda: _one_hot(rows, classes), "column": lambda: _rows(rows, 1, seed=2),
                   "binary": lambda: [row[:1] for row in _one_hot(rows, 2)]}[values["T"]]()
    if values.get("mask2") == "mask":
        values["mask2"] = np.random.default_rng(3).integers(0, 2, size=(rows, 2)).tolist()
    values["learning_rate"] = 0.1
    return {"X": values.pop("X"), "T": values.pop("T"), **values}


def exact_transcript(path, monkeypatch):
    """The transcript every row written out, as a batch under the threshold is."""
    with monkeypatch.context() as m:
        m.setattr(large_batch, "EXACT_ROWS", 10**9)
        return net_file_transcript(load_net_file(path))


def assert_agrees(fast, exact, tolerance):
    assert set(fast.quantities) <= set(exact.quantities)
    for key, q in fast.quantities.items():
        got, want = float(sp.N(q.value, 30)), float(sp.N(exact.value(key), 30))
        assert abs(got - want) <= tolerance * max(1.0, abs(want)), (key, got, want)


@pytest.mark.parametrize("spec", CASES)
def test_just_above_the_threshold_the_float64_sums_are_the_exact_ones(tmp_path, monkeypatch, spec):
    after = "forward_after_step = true" if spec == "affine(2,1) binary-cross-entropy" else ""
    path = write_net(tmp_path, spec, case_values(spec, EXACT_ROWS + 1), extra=after)
    fast, exact = net_file_transcript(load_net_file(path)), exact_transcript(path, monkeypatch)
    sums = {k for k, q in fast.quantities.items() if q.result_of is not None}
    assert "dL/db1[0]" in sums
    assert_agrees(fast, exact, FLOAT64_TOLERANCE)
    # the written rows are the exact transcript's, number for number, wherever no sum comes before them
    for key, q in fast.quantities.items():
        if key not in sums and not _after_a_sum(fast, key, sums):
            assert q.value == exact.value(key), key
    assert not any(f"X[{SHOWN_ROWS}," in k for k in fast.quantities)  # the rows after the first are not written


def test_a_per_feature_op_sums_its_parameter_over_the_batch(monkeypatch):
    """dh1[n,j]/dg1[j], a row's local derivative with respect to a shared parameter, is a row's."""
    from symprop.symbolic.graph import parse_net
    from symprop.symbolic.layers import REGISTRY, PerFeature

    op = REGISTRY.register(PerFeature("test-scale", "g*x", "learnable per-feature scale (defined in a test)"))
    try:
        graph = parse_net("affine(2,2) test-scale sigmoid affine(2,2) softmax-cross-entropy")
        values = {"X": _rows(EXACT_ROWS + 1, 2), "T": _one_hot(EXACT_ROWS + 1, 2), "W1": [[0.1, 0.2], [0.3, -0.4]],
                  "b1": [0, 0.1], "g1": [1.5, -0.5], "W2": [[1, 0], [0.5, 1]], "b2": [0, 0]}
        fast = gt.graph_transcript(graph, values, learning_rate="0.1")
        monkeypatch.setattr(large_batch, "EXACT_ROWS", 10**9)
        exact = gt.graph_transcript(graph, values, learning_rate="0.1")
    finally:
        REGISTRY.remove(op.name)
    assert fast.quantities["dL/dg1[1]"].result_of is not None and "dh1[2,1]/dg1[1]" in fast.quantities
    assert_agrees(fast, exact, FLOAT64_TOLERANCE)


def _after_a_sum(t, key, sums) -> bool:
    from symprop.symbolic.checker import _dependencies

    return any(k in sums or _after_a_sum(t, k, sums) for k in _dependencies(t, key))


def test_the_batch_sum_convention_sums_the_loss_without_1_over_n(tmp_path, monkeypatch):
    spec = "affine(2,3) sigmoid affine(3,2) softmax-cross-entropy"
    path = write_net(tmp_path, spec, case_values(spec, EXACT_ROWS + 1))
    fast = net_file_transcript(load_net_file(path), batch_sum=True)
    with monkeypatch.context() as m:
        m.setattr(large_batch, "EXACT_ROWS", 10**9)
        exact = net_file_transcript(load_net_file(path), batch_sum=True)
    assert_agrees(fast, exact, FLOAT64_TOLERANCE)
    mean = net_file_transcript(load_net_file(path))
    assert float(fast.value("L")) == pytest.approx((EXACT_ROWS + 1) * float(mean.value("L")), rel=FLOAT64_TOLERANCE)


def test_the_float32_convention_sums_in_float32(tmp_path, monkeypatch):
    spec = "affine(2,3) sigmoid affine(3,2) softmax-cross-entropy"
    path = write_net(tmp_path, spec, case_values(spec, EXACT_ROWS + 1))
    with in_float32():
        fast, exact = net_file_transcript(load_net_file(path)), exact_transcript(path, monkeypatch)
    assert_agrees(fast, exact, FLOAT32_TOLERANCE)
    assert "float32" in fast.render("text") and float(fast.value("L")) == float(np.float32(float(fast.value("L"))))


def test_rounded_intermediates_are_rounded_in_the_sums_too(tmp_path, monkeypatch):
    spec = "affine(2,2) softmax-cross-entropy"
    path = write_net(tmp_path, spec, case_values(spec, EXACT_ROWS + 1))
    with rounding_intermediates(4):
        fast, exact = net_file_transcript(load_net_file(path)), exact_transcript(path, monkeypatch)
    # one unit of the 4th decimal: a float64 sum can land on the other side of a rounding tie
    assert_agrees(fast, exact, 1e-4)
    assert fast.value("L") * 10**4 == int(fast.value("L") * 10**4)


def test_the_transcript_says_which_numbers_are_float64_in_both_languages(tmp_path):
    spec = "affine(2,2) softmax-cross-entropy"
    t = net_file_transcript(load_net_file(write_net(tmp_path, spec, case_values(spec, 500))))
    text, zh = t.render("text"), t.render("md", lang="zh")
    assert "A batch of 500 rows: the first 3 are written out" in text
    assert "the sum over all 500 rows of the batch, computed in float64" in text
    assert "以 float64 计算" in zh and "批量为 500 行" in zh
    assert "L ≈" in text and "dL/dW1[0,0] ≈" in text and "W1_new[0,0] = W1[0,0] - lr*dL/dW1[0,0]" in text


def test_a_layer_alone_writes_its_first_rows_and_checks_every_row(tmp_path, monkeypatch):
    """No parameters, so nothing to sum: the first rows as the exact transcript writes them, and
    a row that has no real value (the log of a negative input) is still refused, naming it."""
    values = {"X": _rows(30, 2), "dout": _rows(30, 2, seed=5)}
    path = write_net(tmp_path, "tanh", values)
    t = net_file_transcript(load_net_file(path))
    exact = exact_transcript(path, monkeypatch)
    assert t.quantities.keys() == {k for k in exact.quantities if not any(f"[{n}," in k for n in range(SHOWN_ROWS, 30))}
    assert all(q.value == exact.value(k) for k, q in t.quantities.items())
    assert "the other rows are computed alike" in t.render("text")
    values["X"] = np.abs(values["X"]).tolist()
    values["X"][29] = [-1, 1]
    with pytest.raises(SympropError, match=r"h0\[29,0\] is not a finite number in float64"):
        net_file_transcript(load_net_file(write_net(tmp_path, "formula(log(x + 0.5))", values)))


def test_shipped_net_files_are_written_out_whole():
    """Their transcripts (and the golden files made from them) keep every row exact."""
    for path in NETS.glob("*.toml"):
        assert load_net_file(path).batch_size <= EXACT_ROWS, path.name


def test_a_large_logit_stays_finite_in_float64(tmp_path, monkeypatch):
    """Binary cross-entropy from the logits at z = 1000 (and sigmoid there): the stable forms."""
    spec = "affine(2,1) binary-cross-entropy"
    values = case_values(spec, EXACT_ROWS + 1)
    values["X"][EXACT_ROWS] = [2000, 0]
    path = write_net(tmp_path, spec, values)
    assert_agrees(net_file_transcript(load_net_file(path)), exact_transcript(path, monkeypatch), FLOAT64_TOLERANCE)


def test_a_value_that_overflows_float64_is_refused_naming_it_and_the_row(tmp_path):
    spec = "affine(2,1) formula(exp(x)) affine(1,1) squared-error"
    values = {"X": _rows(30, 2), "T": _rows(30, 1), "W1": [[1], [0]], "b1": [0], "W2": [[1]], "b2": [0]}
    values["X"][25] = [800, 0]
    with pytest.raises(SympropError, match=r"big.toml: h1\[25,0\] is not a finite number in float64"):
        net_file_transcript(load_net_file(write_net(tmp_path, spec, values)))


BAD_ROWS = {  # field, row 25 replaced by -> the exact path's message, which the fast one repeats
    "a short row": ("X", [1.0]),
    "a word": ("X", [1.0, "x"]),
    "true": ("X", [True, 1.0]),
    "too large": ("X", [1e7, 1.0]),
    "a nested row": ("X", [[1.0], 2.0]),
    "not one-hot": ("T", [1, 1]),
}


@pytest.mark.parametrize("case", BAD_ROWS)
def test_a_bad_row_after_the_written_ones_is_refused_as_in_a_small_batch(tmp_path, monkeypatch, case):
    field, row = BAD_ROWS[case]
    values = {"X": _rows(30, 2), "T": _one_hot(30, 2)}
    values[field][25] = row
    path = write_net(tmp_path, "softmax-cross-entropy", values)

    def message():
        with pytest.raises(SympropError) as caught:
            net_file_transcript(load_net_file(path))
        return str(caught.value)

    fast = message()
    with monkeypatch.context() as m:
        m.setattr(large_batch, "EXACT_ROWS", 10**9)
        assert message() == fast
    assert "big.toml" in fast and "field" in fast and "\n" not in fast


def test_rows_and_masks_are_checked_in_every_row(tmp_path):
    spec = "affine(2,2) dropout(0.5) affine(2,2) softmax affine(2,1) huber"
    values = case_values(spec, 30)
    values["mask2"][27] = [0.5, 1]
    with pytest.raises(SympropError, match=r"field 'mask2': a dropout mask holds 0 \(dropped\) or 1 \(kept\); "
                                           r"got 1/2 at \[27,0\]"):
        load_net_file(write_net(tmp_path, spec, values))
    for t_rows in (29, 2):
        values = case_values(spec, 30)
        values["T"] = values["T"][:t_rows]
        with pytest.raises(SympropError, match=fr"field 'T': expected 30 rows, shape \(30, 1\); got {t_rows}"):
            load_net_file(write_net(tmp_path, spec, values))


def test_batch_norm_mixes_the_rows_and_is_refused_beyond_its_limit(tmp_path):
    values = {"X": _rows(MAX_MIXING_ROWS + 1, 2), "T": _one_hot(MAX_MIXING_ROWS + 1, 2), "W1": [[1, 0], [0, 1]],
              "b1": [0, 0], "scale2": [1, 1], "shift2": [0, 0]}
    path = write_net(tmp_path, "affine(2,2) batchnorm softmax-cross-entropy", values)
    with pytest.raises(SympropError, match=f"batch norm averages each feature over the batch.*at most "
                                           f"{MAX_MIXING_ROWS} rows; this batch has {MAX_MIXING_ROWS + 1}"):
        net_file_transcript(load_net_file(path))


def test_the_checker_checks_written_rows_and_sums_without_writing_out_every_row(tmp_path, monkeypatch):
    spec = "affine(2,3) sigmoid affine(3,2) softmax-cross-entropy"
    path = write_net(tmp_path, spec, case_values(spec, 2000))
    t = net_file_transcript(load_net_file(path))
    right = {key: f"{float(t.value(key)):.6g}" for key in ("z1[0,0]", "h1[2,1]", "L", "dL/dW1[1,2]", "b2_new[1]")}
    wrong = {"dL/db1[0]": f"{-float(t.value('dL/db1[0]')):.6g}", "P[1,0]": "0.9"}
    claims = tmp_path / "claims.toml"
    claims.write_text('network = "big.toml"\n[claims]\n'
                      + "".join(f'"{k}" = "{v}"\n' for k, v in {**right, **wrong}.items()))
    built = []
    builder = gt._Builder.__init__
    monkeypatch.setattr(gt._Builder, "__init__", lambda self, t, rows, *a, **k: (built.append(rows),
                                                                                  builder(self, t, rows, *a, **k))[1])
    report = check(*load_claims(claims))
    verdicts = {v.key: v for v in report.verdicts}
    assert all(verdicts[k].right for k in right) and not report.problems
    assert not verdicts["dL/db1[0]"].right and verdicts["dL/db1[0]"].code == "sign_flipped"
    assert not verdicts["P[1,0]"].right
    assert built and max(built) <= SHOWN_ROWS  # every exact build wrote at most the first rows
