"""The scalar-expanded training step of tiny networks (every layer at most TINY_WIDTH wide).

A step of the 2-2-2 worked example is a few dozen multiplications. Looping over 2 x 2 matrices
and allocating a workspace costs more than that arithmetic, so for tiny networks the step is
written out unit by unit instead:

- the parameters are read once into scalar locals (``W1_0_1 = W1[0, 1]``);
- each batch row n is one pass of straight-line code in which every unit is a named scalar
  (``z1_0``, ``h1_0``, ..., and on the way back ``dh1_0``, ``dz1_0``);
- the parameter gradients are summed over the rows in scalar locals (``dW1_0_1 += ...``);
- only after the last row, with the gradient complete, is the SGD update written into the
  parameter arrays.

No workspace and no temporary arrays. Nothing here is a formula typed by hand: the statements
are the layers' own derivations (``REGISTRY``), specialised to concrete sizes. The affine rules
(Y = X W + 1 b, dW = X^T dY, ...) are expanded for one batch row with ``as_explicit``; the
elementwise and loss rules get each unit's scalar substituted for x, y and the upstream
gradient; the softmax sums over the K classes are written out term by term.

``scalar_step`` returns None for a network it has no scalar form for (a layer wider than
TINY_WIDTH, or an op type missing from ``LOWERINGS``): that network keeps the matrix step.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symprop.symbolic.layers import (REGISTRY, Affine, Elementwise, ElementwiseLoss, I, J, K, N,
                                     Softmax, SoftmaxCrossEntropy)

from .common import fresh_name, indent, lowering
from .printer import KernelPrinter, print_statements

# A network whose every affine layer has at most this many inputs and outputs gets the scalar
# step. Measured (batch 1, sigmoid + softmax-cross-entropy, per step in sgd_steps, matrix ->
# scalar): 4-4-4 0.88 -> 0.12 us, 8-8-8 1.67 -> 0.29 us. The price is compile time, once per
# dtype thanks to the on-disk cache: 8-8-8 takes ~10 s per step kernel instead of ~4 s.
TINY_WIDTH = 8

# ...and whose scalar step is at most this many lines per batch row (``ScalarStep.size``).
# numba's compile time grows faster than linearly with the straight-line body, while the
# matrix step's stays at a few seconds: CPU seconds to a first sgd_step_kernel call in a
# fresh process, scalar against matrix step (benchmarks/first_step.py measures the whole wait):
#   2-2-2 (27 lines) 0.7 / 3.8,  3-8-4-2 (137) 2.8 / 5.3,  3-8-8-2 (200) 4.9 / 5.4,
#   8-8-8 (201) 5.7 / 3.7,  4-8-8-8-3 (325) 8.8 / 8.0,  8-8-8-8-8 (409) 15.4 / 6.8.
# Past ~200 lines the scalar step compiles slower than the matrix step, and a learner waits
# for that on every new spec, so those networks keep the matrix step. (Measured before the
# `zero` and update lines of function_text were trimmed, which took ~20% off the scalar
# column: the crossover may now sit somewhat higher.)
SCALAR_MAX_LINES = 200


def real(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def unit(base: str, *index: int) -> sp.Symbol:
    """The scalar local holding one unit (z1_0) or one parameter entry (W1_0_1)."""
    return real("_".join([base, *map(str, index)]))


@dataclass(frozen=True)
class ParamEntry:
    """One parameter element: its scalar local, its gradient's, and where it is stored."""

    local: str  # W1_0_1
    grad: str  # dW1_0_1
    element: str  # W1[0, 1]


@dataclass
class ScalarStep:
    """The text pieces of one network's scalar step (see ``function_text``)."""

    params: list  # (name, shape) in argument order
    entries: list[ParamEntry]  # every parameter element, read once and updated at the end
    zero_lines: list[str]  # gradient accumulators
    row_lines: list[str]  # one batch row: forward, loss, backward
    after_lines: list[str]  # loss scaling after the last row
    helpers: set[str]

    @property
    def size(self) -> int:
        """Lines in one batch row: what numba and LLVM compile, and what compile time grows with."""
        return sum(1 for line in self.row_lines if line.strip() and not line.lstrip().startswith("#"))

    def function_text(self, name: str, decorator: str) -> str:
        """The step as one jitted function ``name(W1, b1, ..., X, T, lr)``: the network module
        makes it sgd_step_kernel itself, and sgd_steps_kernel and sgd_step_packed_kernel call it,
        so all three share one compiled body (per dtype) instead of each compiling the whole
        step again."""
        args = ", ".join(name for name, _ in self.params)
        read_lines = [f"{e.local} = {e.element}" for e in self.entries]
        # p = p_local - step * dp: the same number as p -= step * dp without reading p again.
        # Both this and `zero` below are for numba, whose compile time grows with every typed
        # operation of the straight-line body (3-8-8-2: 4.2-4.3 -> 3.3-3.6 s of CPU together).
        update_lines = [f"{e.element} = {e.local} - step * {e.grad}" for e in self.entries]
        return f'''
@{decorator}
def {name}({args}, X, T, lr):
    """One gradient-descent step in place with every unit a scalar local (the tiny-network
    form): no workspace, no temporary arrays. The gradient is summed over the batch rows
    first; the parameters change only after the last row. Returns the loss before the step."""
    real = X.dtype.type
    N = X.shape[0]
    # ---- parameters, read once ----
{chr(10).join(indent(read_lines, 1))}
    # ---- gradients, summed over the batch rows ----
    zero = real(0)
{chr(10).join(indent(self.zero_lines, 1))}
    loss = real(0)
    for n in range(N):
{chr(10).join(indent(self.row_lines + [""], 2) + indent(self.after_lines, 1))}
    # ---- SGD update: p -= lr * dL/dp, the gradient complete ----
    step = real(lr)
{chr(10).join(indent(update_lines, 1))}
    return loss
'''


class _ScalarPrinter:
    """Walks the layers like ``network._NetworkPrinter`` but names every unit a scalar.

    ``self.value`` is the current forward value's name (``X``, ``z1``, ``h1``, ...) and
    ``self.width`` its number of units; unit j of value v is the local ``v_j`` (X and T are
    read from the arrays as ``X[n, j]``, ``T[n, j]``).
    """

    def __init__(self, uses):
        self.params: list[tuple[str, tuple]] = []
        self.entries: list[ParamEntry] = []
        self.zero_lines: list[str] = []
        self.forward_lines: list[str] = []
        self.loss_lines: list[str] = []
        self.after_lines: list[str] = []
        self.backward_lines: list[str] = []
        self.helpers: set[str] = set()
        self.names: dict[str, str] = {}  # scalar name -> printed text, for X and T
        self.value, self.width, self.affine_count = "X", uses[0].args[0], 0
        self.values: set[str] = {"X"}  # names of the values so far (each unit is <name>_<j>)
        for use in uses:
            lowering(self.LOWERINGS, use.op, use.where)(self, use)

    def units(self, base: str, width: int | None = None) -> list[sp.Symbol]:
        """The scalars of a value; X and T print as reads of row n of their array."""
        symbols = [unit(base, j) for j in range(self.width if width is None else width)]
        if base in ("X", "T"):
            self.names.update({s.name: f"{base}[n, {j}]" for j, s in enumerate(symbols)})
        return symbols

    def statements(self, assignments, comment_for=None, accumulate=()):
        """Printed statements; targets in ``accumulate`` become ``target += expr`` (a sum over
        the batch rows kept in a scalar). CSE temporaries are t0, t1, ..., never a target."""
        lines, used = print_statements(assignments, self.names, comment_for=comment_for, scalar=True,
                                       accumulate=accumulate)
        self.helpers |= used
        return lines

    def prepend_backward(self, lines):
        self.backward_lines = lines + self.backward_lines

    # ---- per op type: forward statements now, backward statements prepended (reverse order) ----
    def _affine(self, use):
        self.affine_count += 1
        k = self.affine_count
        inputs, outputs = use.args
        W, b, z, source = f"W{k}", f"b{k}", f"z{k}", self.value
        shared = use.op.shared_bias
        bias_size = 1 if shared else outputs
        self.params += [(W, use.args), (b, (bias_size,))]
        self.entries += [ParamEntry(unit(W, i, j).name, unit("d" + W, i, j).name, f"{W}[{i}, {j}]")
                         for i in range(inputs) for j in range(outputs)]
        self.entries += [ParamEntry(unit(b, j).name, unit("d" + b, j).name, f"{b}[{j}]") for j in range(bias_size)]
        self.zero_lines += [f"{unit('d' + W, i, j)} = zero  # dL/d{W}[{i}, {j}]"
                            for i in range(inputs) for j in range(outputs)]
        self.zero_lines += [f"{unit('d' + b, j)} = zero  # dL/d{b}" + (f"[{j}]" if not shared else "")
                            for j in range(bias_size)]
        # The matrix rules for one batch row (N = 1), with each matrix entry named by its scalar.
        source_units = self.units(source, inputs)
        entry = {"X": lambda i, j: source_units[j], "W": lambda i, j: unit(W, i, j),
                 "b": lambda i, j: unit(b, j), "dY": lambda i, j: unit("d" + z, j)}
        d = REGISTRY.derive(use.op.name)

        def one_row(rule):
            """The rule with every matrix symbol replaced by an explicit matrix of its scalars,
            then multiplied out (as_explicit on the symbolic product sums each entry with
            Sum.doit: seconds per network where this takes milliseconds)."""
            concrete = rule.subs({N: 1, I: inputs, J: outputs})
            explicit = {m: sp.ImmutableMatrix(*m.shape, lambda i, j, m=m: entry[m.name](int(i), int(j)))
                        for m in concrete.atoms(sp.MatrixSymbol)}
            return sp.ImmutableMatrix(concrete.xreplace(explicit).doit().as_explicit())

        Y = one_row(d.forward["Y"])
        self.forward_lines += [f"# layer {use.position}: {use.text}  ({z} = {source} {W} + 1 {b})",
                               *self.statements([(unit(z, j).name, Y[0, j]) for j in range(outputs)])]
        dW, db = one_row(d.backward["dW"]), one_row(d.backward["db"])
        grads = ([(unit("d" + W, i, j).name, dW[i, j]) for i in range(inputs) for j in range(outputs)]
                 + [(unit("d" + b, j).name, db[0, j]) for j in range(bias_size)])
        comments = {unit("d" + W, i, j).name: f"dL/d{W}[{i}, {j}], row n's term of {source}^T dL/d{z}"
                    for i in range(inputs) for j in range(outputs)}
        comments.update({unit("d" + b, j).name: f"dL/d{b}, row n's term of 1^T dL/d{z} 1 (shared bias)" if shared
                         else f"dL/d{b}[{j}], row n's term of 1^T dL/d{z}" for j in range(bias_size)})
        backward = [f"# layer {use.position}: {use.text}",
                    *self.statements(grads, comments.get, accumulate={t for t, _ in grads})]
        if k > 1:  # the gradient with respect to the input data X is never needed
            dX = one_row(d.backward["dX"])
            backward += self.statements([(unit("d" + source, i).name, dX[0, i]) for i in range(inputs)],
                                        lambda t: f"dL/{t} = dL/d{z} {W}^T, unit {t.rsplit('_', 1)[1]}")
        self.prepend_backward(backward)
        self.value, self.width = z, outputs

    def _elementwise(self, use):
        d = use.op.derive()
        source, out = self.value, fresh_name(f"h{self.affine_count}", self.values)
        self.values.add(out)
        x, y, dout = real("x"), real(use.op.output), real("dout")
        rule = d.backward["dx"]
        local = sp.sstr((rule / dout).subs({x: sp.Symbol(source), y: sp.Symbol(out)}))
        forward, backward = [], []
        for j, (s, o) in enumerate(zip(self.units(source), self.units(out))):
            scalars = {x: s, y: o, dout: unit("d" + out, j)}
            forward.append((o.name, d.forward[use.op.output].xreplace(scalars)))
            backward.append((unit("d" + source, j).name, rule.xreplace(scalars)))
        self.forward_lines += [f"# layer {use.position}: {use.text}", *self.statements(forward)]
        self.prepend_backward([f"# layer {use.position}: {use.text}", *self.statements(
            backward, lambda t: f"dL/{t} = dL/d{out}_{t.rsplit('_', 1)[1]} * d{out}/d{source} = "
                                f"dL/d{out}_{t.rsplit('_', 1)[1]} * {local}")])
        self.value = out

    def _expand_row(self, rule, values, c=None):
        """A softmax rule for this row and class c (0-based; the rules count classes from 1):
        K made concrete, the free class index (j or k) set to c + 1, each sum over the classes
        written out term by term, and every z[i], y[i], ... replaced by its scalar from values."""
        frees = {s: c + 1 for s in rule.free_symbols if s.is_integer and s.name in ("j", "k")}
        expr = rule.subs(K, self.width).subs(frees).doit()
        return expr.xreplace({e: values[e.base.label.name][int(e.indices[0]) - 1] for e in expr.atoms(sp.Indexed)})

    def _expand_classes(self, rule, values):
        """The rule of a class index, one expression per class of the row."""
        return [self._expand_row(rule, values, c) for c in range(self.width)]

    def _row_max(self, source_units):
        """zmax = the largest score of the row, subtracted before exp (the rules' zmax)."""
        return [f"zmax = {KernelPrinter().doprint(sp.Max(*source_units))}"]

    def _softmax(self, use):
        d = REGISTRY.derive("softmax")
        source, out = self.value, fresh_name(f"p{self.affine_count}", self.values)
        self.values.add(out)
        z, y, dy = self.units(source), self.units(out), self.units("d" + out)
        forward = self._expand_classes(d.forward["y[k]"], {"z": z})
        self.forward_lines += [f"# layer {use.position}: {use.text} (row maximum subtracted)",
                               *self._row_max(z), *self.statements([(s.name, e) for s, e in zip(y, forward)])]
        backward = self._expand_classes(d.backward["dz[j]"], {"y": y, "dy": dy})
        rule = sp.sstr(d.backward["dz[j]"])
        self.prepend_backward([f"# layer {use.position}: {use.text}", *self.statements(
            [(unit("d" + source, c).name, e) for c, e in enumerate(backward)],
            lambda t: f"dL/{t} = {rule} with j = {t.rsplit('_', 1)[1]}")])
        self.value = out

    def _softmax_cross_entropy(self, use):
        d = REGISTRY.derive(use.op.name)
        source = self.value
        z, P, T = self.units(source), self.units("P"), self.units("T")
        probabilities = self._expand_classes(d.forward["y[k]"], {"z": z})
        row_loss = self._expand_row(d.forward["L_n"], {"z": z, "t": T})
        self.loss_lines = [f"# layer {use.position}: {use.text} (log-sum-exp, row maximum subtracted;"
                           " P = softmax, saved for backward)",
                           *self._row_max(z),
                           *self.statements([*((p.name, e) for p, e in zip(P, probabilities)), ("loss", row_loss)],
                                            accumulate={"loss"})]
        self.after_lines = ["loss = loss / real(N)"]
        backward = self._expand_classes(d.backward["dz[j]"], {"y": P, "t": T})
        rule = sp.sstr(d.backward["dz[j]"])
        self.prepend_backward([f"# layer {use.position}: {use.text}", *self.statements(
            [(unit("d" + source, c).name, e) for c, e in enumerate(backward)],
            lambda t: f"dL/{t} = {rule} with j = {t.rsplit('_', 1)[1]}")])

    def _loss(self, use):
        d = use.op.derive()
        source = self.value
        p, t = real(use.op.prediction), real("t")
        grad = "d" + use.op.prediction
        scale = use.op.loss_scale.subs(K, self.width)
        terms, backward = [], []
        for j, (s, target) in enumerate(zip(self.units(source), self.units("T"))):
            terms.append(("loss", d.forward["l"].xreplace({p: s, t: target})))
            backward.append((unit("d" + source, j).name, d.backward[grad].subs(K, self.width).xreplace({p: s, t: target})))
        self.loss_lines = [f"# layer {use.position}: {use.text}", *self.statements(terms, accumulate={"loss"})]
        if scale != 1:
            self.after_lines = [f"loss = loss * {KernelPrinter().doprint(scale)}"]
        rule = sp.sstr(d.backward[grad])
        self.prepend_backward([f"# layer {use.position}: {use.text}",
                               *self.statements(backward, lambda t: f"dL/{t} = {rule}")])


    # op type -> how it is expanded (an op type not listed keeps the matrix step)
    LOWERINGS = {Affine: _affine, Elementwise: _elementwise, Softmax: _softmax,
                 SoftmaxCrossEntropy: _softmax_cross_entropy, ElementwiseLoss: _loss}


def scalar_step(graph) -> ScalarStep | None:
    """The scalar step of a network (a Graph), or None when it is not tiny, has an op type
    without one, or would take longer to compile than the matrix step (SCALAR_MAX_LINES)."""
    uses = graph.nodes
    if any(max(use.args) > TINY_WIDTH for use in uses if isinstance(use.op, Affine)):
        return None
    if any(not isinstance(use.op, tuple(_ScalarPrinter.LOWERINGS)) for use in uses):
        return None
    net = _ScalarPrinter(uses)
    row = ["# ---- forward ----", *net.forward_lines, "# ---- loss ----", *net.loss_lines,
           "# ---- backward (chain rule, from the loss back to the first layer) ----", *net.backward_lines]
    step = ScalarStep(net.params, net.entries, net.zero_lines, row, net.after_lines, net.helpers)
    return step if step.size <= SCALAR_MAX_LINES else None
