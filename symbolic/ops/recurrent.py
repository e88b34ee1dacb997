"""Recurrent layers: a vanilla RNN (tanh) unrolled over T steps, with backpropagation through time.

A sequence enters as (T, D) per example, the kernels' X as an (N, T*D) array read X[n, t, d]
(as conv2d reads images). Step t = 1..T computes

    a[n,t,j] = b[j] + sum_d x[n,t,d] Wx[d,j] + sum_k h[n,t-1,k] Wh[k,j],    h[n,t,j] = tanh(a[n,t,j])

from the initial state h[n,0,k] = 0, and the layer gives the last state h[n,T,:] (a many-to-one
net: ``rnn(D,H,T) affine(H,K) softmax-cross-entropy``). SymPy derives the cell's local
partials and, differentiating the contraction over the unrolled steps, the backward rules of
backpropagation through time: the recurrent path dL/dh[t-1] from step t, and each shared
weight's gradient as a sum over the steps of every step's contribution.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..indexcalc import resolve
from ..ir import (Accumulate, Assignments, Columns, Comment, Copy, Let, Loop, MatrixProduct, Ones, Rows, Slab, Steps,
                  Summed, Transposed, element, gradient_comment, gradient_let, index, local)
from ..text import tr
from ..errors import SympropError
from .base import N, Derivation, Label, Op, Product, Step, _in_terms_of_output, partial, positive_sizes, real

# Sizes as symbols, so no derivation depends on them: input width, hidden width, steps.
D, H, T = sp.symbols("D H T", integer=True, positive=True)
INITIAL_STATE = "h[n,0,k] = 0: the state before the first step (the recurrent term of step 1 is zero)"
TRUNCATION = ("truncated, NAME(D,H,T,k): the gradient flows back through the last k steps only, as if the state "
              "after step T-k were a constant (truncated backpropagation through time): every rule above holds for "
              "t > T-k, the gradient reaching step T-k+1 goes no further, and each shared weight's gradient sums "
              "steps T-k+1..T; k = T is the full sum")
STEPS_FROM_ONE = ("steps count from 1 to T: step t reads x_t, the row's inputs X[n, t-1, :], and the state "
                  "h[n,t-1,:] the step before it left (h[n,0,:] = 0)")


def _indices():
    return sp.symbols("n t d j k e m q u a", integer=True)


def _arrays():
    return tuple(sp.IndexedBase(name) for name in ("x", "Wx", "Wh", "b", "h", "da", "dh"))


class SequenceOp(Op):
    """What a recurrent layer answers in a net spec (rnn, lstm, gru): (D, H, T) arguments and an
    optional truncation k, (T, D) sequences in, the last state (H) out.

    With k < T (truncated backpropagation through time) the gradient flows back through the
    last k steps only, as if the state after step T-k were a constant: the backward pass runs
    k steps instead of T, the cost truncation is for (``first_step``)."""

    value_stem = "h"  # h1: the last hidden state, the layer's output
    starts_layer = True  # its parameters Wx1, Wh1, ... and its states hs1 are layer 1's
    layer_kernels = False  # its steps T are fixed by its arguments: compiled inside networks only

    def parse_args(self, inner, where):
        needs = (f"{self.name} needs three positive sizes: inputs per step, hidden units and steps, e.g. "
                 f"{self.name}(3,2,3), and optionally the steps the gradient flows back through (truncated "
                 f"backpropagation through time, at most the steps), e.g. {self.name}(3,2,6,3)")
        args = positive_sizes(inner, (3, 4), where, needs)
        if len(args) == 4 and args[3] > args[2]:
            raise SympropError(f"{where}: {self.name} truncates the gradient to {args[3]} steps but runs only "
                               f"{args[2]}; {needs}")
        return args

    @staticmethod
    def first_step(args) -> int:
        """The first step the gradient reaches: 1, or T - k + 1 truncated to k steps."""
        return args[2] - args[3] + 1 if len(args) == 4 else 1

    def input_width(self, args):
        inputs, _, steps = args[:3]
        return (steps, inputs)  # a sequence: T steps of D inputs each

    def shape_problem(self, args, shape):
        inputs, _, steps = args[:3]
        if shape != (steps, inputs):
            return f"takes sequences of {steps} steps of {inputs} inputs, shape {(steps, inputs)}; got {shape}"
        return None

    def output_width(self, args, shape):
        return args[1]

    def step_products(self, args, shape_in, shape_out, batch, first):
        """x_t Wx for every step at once, h_{t-1} Wh step by step; back through time, each
        step's gradients through Wh^T (a contiguous copy), then dWx and dWh over every step
        the gradient reaches at once, and dx step by step (none for the first layer)."""
        inputs, hidden, steps = args[:3]
        gates = dict(self.param_shapes(args, shape_in))["Wh"][1]  # H, 4H or 3H columns
        reached = steps - self.first_step(args) + 1  # the steps the gradient flows back through
        products = [Product("x Wx", batch * steps, inputs, gates),
                    Product("h Wh", batch, hidden, gates, count=steps, shared=("right", "out")),
                    Product("dh = da Wh^T", batch, gates, hidden, count=self.steps_back(args),
                            shared=("right", "out")),
                    Product("dWx = x^T da", inputs, batch * reached, gates, left_transposed=True),
                    Product("dWh = h^T da", hidden, batch * reached, gates, left_transposed=True)]
        if not first:
            products.append(Product("dx = da Wx^T", batch, gates, inputs, count=reached, right_transposed=True,
                                    shared=("right", "out")))
        return products

    def steps_back(self, args) -> int:
        """How many steps pass their gradient back through Wh: every step the gradient reaches
        but the first (h_0 = 0 and a truncated past need none)."""
        return args[2] - self.first_step(args)


@dataclass(frozen=True)
class RNN(SequenceOp):
    """A tanh RNN over T steps: rnn(D, H, T) takes (T, D) sequences and gives the last state (H)."""

    name: str
    summary: str
    inputs: tuple[str, ...] = ("x", "Wx", "Wh", "b")

    def param_shapes(self, args, width):
        inputs, hidden, _ = args[:3]
        return [("Wx", (inputs, hidden)), ("Wh", (hidden, hidden)), ("b", (hidden,))]

    def derive(self) -> Derivation:
        n, t, d, j, k, e, m, q, u, a = _indices()
        x, Wx, Wh, b, h, da, dh = _arrays()
        pre = b[j] + sp.Sum(x[n, t, d] * Wx[d, j], (d, 0, D - 1)) + sp.Sum(h[n, t - 1, k] * Wh[k, j], (k, 0, H - 1))
        state = sp.tanh(sp.IndexedBase("a")[n, t, j])
        # the activation's local derivative, by SymPy, then in terms of the saved state
        z, y = real("a"), real("h")
        tanh_local = sp.diff(sp.tanh(z), z)
        tanh_saved = _in_terms_of_output(tanh_local, sp.tanh(z), y, [z])
        local_da = dh[n, t, j] * tanh_saved.xreplace({y: h[n, t, j]})
        # the pre-activation's local partials, one element of each input, deltas sifted
        partials = [(x[n, t, e], "x", "x[n,t,e]"), (h[n, t - 1, m], "h", "h[n,t-1,m]"),
                    (Wx[e, q], "Wx", "Wx[e,q]"), (Wh[m, q], "Wh", "Wh[m,q]"), (b[q], "b", "b[q]")]
        locals_ = [(label, resolve(sp.diff(pre, var))) for var, _, label in partials]
        # backpropagation through time: the contraction over every row, step and unit of the
        # unrolled sequence, differentiated by one element of each input
        L = sp.Sum(da[n, t, j] * pre, (n, 0, N - 1), (t, 1, T), (j, 0, H - 1))
        dh_prev = resolve(L.diff(h[a, u, m]), shifted=True)
        dx = resolve(L.diff(x[a, u, e]))
        dWx, dWh, db = (resolve(L.diff(var)) for var in (Wx[e, q], Wh[m, q], b[q]))
        step_of = sp.Sum(dWh.function, *(limit for limit in dWh.limits if limit[0] != t))
        steps = [
            Step("forward, step t = 1..T", sp.IndexedBase("a")[n, t, j], pre,
                 "the pre-activation: x_t times Wx plus the previous state times Wh plus the bias; h[n,0,:] = 0"),
            Step("forward", h[n, t, j], state, "the new state: tanh of the pre-activation"),
            Step("local derivative dh/da", partial("h", "a"), tanh_local, "SymPy's diff"),
            Step("in terms of the saved output", partial("h", "a"), tanh_saved, "substituting h = tanh(a)"),
            *(Step(f"local partial of a by {label}", Label(f"da[n,t,j]/d{label}", rf"\frac{{\partial a_{{n,t,j}}}}"
                                                          rf"{{\partial {name}}}"), rule, "SymPy's diff, deltas sifted")
              for (label, rule), (_, name, _) in zip(locals_, partials)),
            Step("backward (chain rule: upstream times local)", da[n, t, j], local_da,
                 "dh[n,t,j] = dL/dh[n,t,j]: from the layer above at t = T, from step t+1 before it"),
            Step("chain rule over the unrolled steps", Label("dL", "dL"), L,
                 "dL = sum_{n,t,j} da[n,t,j] * (change in a[n,t,j]): every step uses the same Wx, Wh, b"),
            Step("differentiate by h[a,u,m]: back through time", dh[a, u, m], dh_prev,
                 "only step u+1 reads h[a,u,:]; at u = T nothing does (da[n,T+1,:] reads as 0), the layer above "
                 "gives dL/dh[a,T,:]"),
            Step("differentiate by x[a,u,e]", sp.IndexedBase("dx")[a, u, e], dx, "deltas sifted"),
            Step("differentiate by Wx[e,q]", sp.IndexedBase("dWx")[e, q], dWx, "a shared weight: summed over the steps"),
            Step("differentiate by Wh[m,q]", sp.IndexedBase("dWh")[m, q], dWh,
                 "a shared weight: the sum over the steps of each step's contribution"),
            Step("step t's contribution to dWh", sp.IndexedBase("dWh_step")[t, m, q], step_of,
                 "the state it read times its pre-activation's gradient, summed over the batch"),
            Step("differentiate by b[q]", sp.IndexedBase("db")[q], db, "summed over the batch and the steps"),
        ]
        backward = {"da": local_da, "dh": dh_prev, "dx": dx, "dWx": dWx, "dWh": dWh, "dWh_step": step_of, "db": db}
        return Derivation(self.name, self.summary, self.inputs, {"a": pre, "h": state}, backward, ("x", "h"), steps,
                          [STEPS_FROM_ONE, INITIAL_STATE, TRUNCATION.replace("NAME", self.name)],
                          [f"dh/da = {tanh_saved} reads the saved state h: no exp, finite for every input"],
                          dict(backward))

    def lower(self, lowering, use):
        """Forward: the steps in order, each state from the one before. Backward, from the last
        step back to the first: the states' gradients (the recurrent path), then each
        parameter's gradient summed over the batch and the steps, dWh step by step. Every sum
        over the inputs or the states is a matrix product over the whole batch (``products``).
        Truncated to k steps, the backward pass stops at step T-k+1 (``first``)."""
        inputs, hidden, steps = use.args[:3]
        first = self.first_step(use.args)
        truncated = Truncation(steps, first)
        layer, source = lowering.names.layer, lowering.values[-1]
        Wx, Wh, b = (lowering.names.params[role] for role in ("Wx", "Wh", "b"))
        lowering.params += [(Wx, (inputs, hidden)), (Wh, (hidden, hidden)), (b, (hidden,))]
        out = lowering.buffer(lowering.names.value, (N, hidden))
        pre = lowering.buffer(f"a{layer}", (N, steps + 1, hidden))  # a[n, 0, :] is never written
        states = lowering.buffer(f"hs{layer}", (N, steps + 1, hidden))  # hs[n, 0, :] = h_0 = 0
        lowering.scratch += [pre, states]
        d = lowering.derivation(self)
        n, t, dd, j, k, e, m, q, u, a = _indices()
        arrays = SequenceArrays(source, inputs, {"a": pre, "h": states, "da": f"d{pre}", "dh": f"d{states}", "Wx": Wx,
                                                 "Wh": Wh, "b": b}, {D: inputs, H: hidden, T: steps})
        at = arrays.at
        what = f"layer {use.position}: {use.text}"
        products = arrays.products(lowering, hidden, hidden, steps)

        step = (arrays.product_summed(at("a", n, t, j), d.forward["a"], tr(
                    f"{use.text}, step t: the bias, plus x_t times Wx, plus the previous state times Wh",
                    f"{use.text}，第 t 步：偏置，加上 x_t 乘 Wx，再加上前一状态乘 Wh"), products.reads(n, t, j)),
                Let(at("h", n, t, j), arrays.named(d.forward["h"]), note=tr(
                    "the new state: tanh of the pre-activation", "新状态：预激活值的 tanh")))
        forward = [products.inputs,
                   Loop(n, N, (Loop(j, hidden, (Let(at("h", n, 0, j), sp.Integer(0), note=tr(
                       "the initial state h_0 = 0", "初始状态 h_0 = 0")),)),)),
                   Loop(t, steps + 1, (products.state(t), Loop(n, N, (Loop(j, hidden, step),))), start=1),
                   Loop(n, N, (Loop(j, hidden, (Let(element(out, "n", "j"), at("h", n, steps, j), note=tr(
                       f"the layer's output is the last state h_{steps}", f"该层的输出为最后的状态 h_{steps}")),)),))]
        lowering.forward += [Comment(f"{what} ({steps} steps of {inputs} -> {hidden} states)"), *forward]

        # back through time: step T's state gets the upstream gradient, each step passes
        # dL/dh[t-1] to the step before it (r counts the steps back, t = T - r)
        r = index("r")
        last = steps - r  # the step r steps before the last
        dh_back = d.backward["dh"].xreplace({a: n, u: last - 1})  # dL/dh[n, t-1, m] from step t
        da = _chain_rule(d.backward["da"], arrays, use.text)
        rows = [Loop(n, N, (Loop(j, hidden, (gradient_let(at("dh", n, steps, j), element(f"d{out}", "n", "j"), note=tr(
            f"the last state's gradient: the upstream gradient dL/d{out}", f"最后状态的梯度：上游梯度 dL/d{out}")),)),)),
            *([products.transposed_state_weights()] if steps > first else []),
            Loop(r, steps - first, (
                Loop(n, N, (Loop(j, hidden, (da(last),)),)),
                products.back(last),
                Loop(n, N, (Loop(m, hidden, (arrays.product_summed(at("dh", n, last - 1, m), dh_back, tr(
                    "back through time: step t's pre-activation gradients times Wh (the recurrent path)",
                    "沿时间反向：第 t 步预激活值的梯度乘以 Wh（循环路径）"), products.back_reads(n, m)),)),)),
            )),
            Loop(n, N, (Loop(j, hidden, (da(sp.Integer(first)),)),))]
        for name in (f"d{pre}", f"d{states}"):
            lowering.buffer(name, (N, steps + 1, hidden))
        step_buffer = lowering.buffer(f"d{Wh}_step", (steps + 1, hidden, hidden))  # [0] is never written
        grads = [lowering.buffer(f"d{p}", shape) for p, shape in ((Wx, (inputs, hidden)), (Wh, (hidden, hidden)),
                                                                   (b, (hidden,)))]
        params = [
            *products.weight_gradients(first),
            Loop(t, steps + 1, (Loop(m, hidden, (Loop(q, hidden, (arrays.product_summed(
                sp.IndexedBase(step_buffer)[t, m, q], d.backward["dWh_step"], tr(
                    f"step t's contribution to dL/d{Wh}: the state it read times its pre-activation's gradient",
                    f"第 t 步对 dL/d{Wh} 的贡献：它读入的状态乘以其预激活值的梯度")),)),)),), start=first),
            Loop(m, hidden, (Loop(q, hidden, (arrays.product_summed(
                sp.IndexedBase(grads[1])[m, q], sp.Sum(sp.IndexedBase(step_buffer)[t, m, q], (t, first, T)), tr(
                    f"{Wh} is shared by every step: its gradient is the sum of the steps' contributions"
                    + truncated.en, f"{Wh} 被每一步共享：其梯度为各步贡献之和" + truncated.zh)),)),)),
            Loop(e, inputs, (Loop(q, hidden, (arrays.product_summed(
                sp.IndexedBase(grads[0])[e, q], truncated(d.backward["dWx"]), tr(
                    f"{Wx} is shared by every step: x_t times step t's pre-activation gradient, summed over the "
                    "batch and the steps" + truncated.en,
                    f"{Wx} 被每一步共享：x_t 乘以第 t 步预激活值的梯度，对批量和各步求和" + truncated.zh)),)),)),
            products.bias_gradient(b, products.into_x, first),
            Loop(q, hidden, (arrays.product_summed(sp.IndexedBase(grads[2])[q], truncated(d.backward["db"]), tr(
                "the pre-activation gradients summed over the batch and the steps" + truncated.en,
                "预激活值的梯度对批量和各步求和" + truncated.zh)),))]
        backward = [Comment(f"{what}: back through time{truncated.en}"), *rows, *params]
        if source != "X" or lowering.input_gradient:  # a step never needs the gradient of the input data X
            dsource = lowering.buffer(f"d{source}", (N, steps * inputs))
            carried = arrays.product_summed(arrays.flat(dsource, n, t, e), d.backward["dx"].xreplace({a: n, u: t}), tr(
                f"the pre-activation gradients carried back through {Wx}", f"预激活值的梯度经 {Wx} 传回"),
                products.input_reads(n, e))
            backward += [*truncated.no_gradient(arrays, dsource, n, e),
                         Loop(t, steps + 1, (products.input_gradient(t), Loop(n, N, (Loop(e, inputs, (carried,)),))),
                              start=first)]
        lowering.prepend_backward(backward)
        lowering.values.append(out)
        lowering.widths.append(hidden)


@dataclass(frozen=True)
class SequenceArrays:
    """The derivation's arrays as the kernel's, for every recurrent family: x[n,t,d] is
    X[n, (t-1)*D + d] (a sequence kept flat, step t at columns (t-1)D .. tD-1); every other role
    (a, h, da, dh, Wx, Wh, b, a gate ...) is the kernel array ``names`` gives."""

    source: str
    inputs: int
    names: dict
    sizes: dict

    def flat(self, name, n, t, e):
        return sp.IndexedBase(name)[n, (t - 1) * self.inputs + e]

    def at(self, role, *indices):
        return sp.IndexedBase(self.names[role])[tuple(sp.sympify(i) for i in indices)]

    def named(self, expr):
        """A rule over the derivation's arrays, over the kernel's."""
        def rename(value):
            role = value.base.label.name
            if role == "x":
                return self.flat(self.source, *value.indices)
            return self.at(role, *value.indices) if role in self.names else value
        return expr.replace(lambda v: isinstance(v, sp.Indexed), rename).xreplace(self.sizes)

    def summed(self, target, rule, note) -> list:
        """target = rule, a sum of terms and sums (a derived index rule): a local accumulator the
        loops add each term to, then one write of the target (its transcript line, with the
        whole sum as its formula). The bias first, then the sums in the order of their index."""
        acc = local("acc")
        terms = sorted(sp.Add.make_args(rule), key=lambda term: (isinstance(term, sp.Sum),
                                                                  str(term.limits[0][0]) if isinstance(term, sp.Sum) else ""))
        statements = [Let(acc, sp.Integer(0))]
        for term in terms:
            body, limits = (term.function, term.limits) if isinstance(term, sp.Sum) else (term, ())
            loop = (Accumulate(acc, self.named(body)),)
            for i, low, high in reversed(limits):
                loop = (Loop(i, (high + 1).xreplace(self.sizes), loop, start=int(low)),)
            statements += loop
        return statements + [Let(target, acc, note=note)]

    def product_summed(self, target, rule, note, reads=None) -> Summed:
        """target = rule where matrix products computed its sums: ``reads`` gives, for each sum,
        the product's element the kernel reads instead (by an array the sum's terms read:
        {"Wh": hw[n, j]}); None: a product wrote the target itself. The transcript runs the sums."""
        means = tuple(self.summed(target, rule, note))
        if reads is None:
            return Summed(target, target, means)
        # a gradient's line says which partial derivative it is (the forward's need no comment)
        comment = gradient_comment(target, self.named(rule)) if target.base.label.name.startswith("d") else ""

        def kernel_read(term):
            if not isinstance(term, sp.Sum):
                return self.named(term)
            (read,) = [value for role, value in reads.items()
                       if role in {v.base.label.name for v in term.function.atoms(sp.Indexed)}]
            return read
        return Summed(target, sp.Add(*map(kernel_read, sp.Add.make_args(rule))), means, comment)

    def products(self, lowering, hidden, columns, steps, into_x="da", into_h="da") -> "StepProducts":
        """The matrix products of a recurrent layer's sums over the whole batch, on scratch
        buffers of the workspace; ``into_x`` and ``into_h`` are the roles of the pre-activations'
        gradients that flow back through Wx and Wh (the GRU has one of each)."""
        Wx, Wh = self.names["Wx"], self.names["Wh"]
        shapes = {"xW": (f"x{Wx}", (N, steps, columns)), "hW": (f"h{Wh}", (N, columns)),
                  "back_h": (f"back{Wh}", (N, hidden)), "back_x": (f"back{Wx}", (N, self.inputs)),
                  "Wh_T": (f"{Wh}T", (columns, hidden))}
        scratch = {role: sp.Symbol(lowering.buffer(name, shape)) for role, (name, shape) in shapes.items()}
        lowering.scratch += [str(scratch["xW"]), str(scratch["hW"])]  # the forward pass's products
        return StepProducts(self, self.names[into_x], self.names[into_h], hidden, columns, steps, scratch)


@dataclass(frozen=True)
class StepProducts:
    """A recurrent layer's sums as matrix products over the batch: each step's (N, H) x (H, 4H)
    and, for every step at once, (N*T, D) x (D, 4H), rather than a loop per element; and the
    elements the kernel reads in their place (``*_reads``, for ``product_summed``)."""

    arrays: SequenceArrays
    into_x: str  # the kernel's array of the pre-activations' gradients that flow back through Wx
    into_h: str  # ... and through Wh
    hidden: int
    columns: int
    steps: int
    scratch: dict  # role -> buffer (a symbol)

    def array(self, role):
        return sp.Symbol(self.arrays.names[role])

    @property
    def inputs(self) -> MatrixProduct:
        """x_t Wx for every step at once: X, (N, T*D), read as the (N*T, D) matrix of its steps."""
        return MatrixProduct(Rows(self.scratch["xW"], self.columns), Rows(sp.Symbol(self.arrays.source),
                                                                           self.arrays.inputs),
                             self.array("Wx"), comment="x_t Wx for every step t at once")

    def state(self, t) -> MatrixProduct:
        return MatrixProduct(self.scratch["hW"], Slab(self.array("h"), t - 1), self.array("Wh"),
                             comment="h_{t-1} Wh for every row")

    def reads(self, n, t, q) -> dict:
        return {"Wx": sp.IndexedBase(self.scratch["xW"])[n, t - 1, q],
                "Wh": sp.IndexedBase(self.scratch["hW"])[n, q]}

    def transposed_state_weights(self) -> Copy:
        """Wh^T copied once, row by row, before the steps back: a product with the copy runs
        faster than with Wh read transposed, on each of the T - 1 steps (BLAS's (N, 4H) x
        (4H, H) with its right operand contiguous; 3 ms of a 36 ms LSTM hidden-256 step)."""
        return Copy(self.scratch["Wh_T"], Transposed(self.array("Wh")))

    def back(self, step) -> MatrixProduct:
        """Step ``step``'s gradients back through Wh^T (its copy), for every row."""
        return MatrixProduct(self.scratch["back_h"], Slab(sp.Symbol(self.into_h), step), self.scratch["Wh_T"],
                             comment="back through Wh for every row")

    def back_reads(self, n, m) -> dict:
        return {"Wh": sp.IndexedBase(self.scratch["back_h"])[n, m]}

    def input_gradient(self, t) -> MatrixProduct:
        return MatrixProduct(self.scratch["back_x"], Slab(sp.Symbol(self.into_x), t), Transposed(self.array("Wx")),
                             comment="back through Wx for every row")

    def input_reads(self, n, e) -> dict:
        return {"Wx": sp.IndexedBase(self.scratch["back_x"])[n, e]}

    def weight_gradients(self, first: int = 1) -> list:
        """dWx = sum_t x_t^T da_t and dWh = sum_t h_{t-1}^T da_t over the steps from ``first``,
        each one product over every row and step (K = N*T): the steps' gradients copied into
        one block, as the inputs and the states they read."""
        inputs, steps = self.arrays.inputs, self.steps
        source = sp.Symbol(self.arrays.source)
        xs = source if first == 1 else Columns(source, (first - 1) * inputs, (steps - first + 1) * inputs)
        return [MatrixProduct(sp.Symbol(f"d{self.arrays.names['Wx']}"), Transposed(Rows(xs, inputs)),
                              Rows(Steps(sp.Symbol(self.into_x), first, steps + 1), self.columns),
                              comment=f"dL/d{self.arrays.names['Wx']}: x_t^T da_t of every step at once"),
                MatrixProduct(sp.Symbol(f"d{self.arrays.names['Wh']}"),
                              Transposed(Rows(Steps(self.array("h"), first - 1, steps), self.hidden)),
                              Rows(Steps(sp.Symbol(self.into_h), first, steps + 1), self.columns),
                              comment=f"dL/d{self.arrays.names['Wh']}: h_(t-1)^T da_t of every step at once")]

    def bias_gradient(self, bias: str, into: str, first: int = 1) -> MatrixProduct:
        """A bias's gradient: ``into``'s rows of every row and step from ``first`` summed
        (ones^T da), one product rather than a strided loop per column."""
        rows = N * (self.steps - first + 1)
        every = Rows(Steps(sp.Symbol(into), first, self.steps + 1), self.columns)
        return MatrixProduct(sp.Symbol(f"d{bias}"), Ones(rows), every, comment=f"dL/d{bias}: every row and step's")


@dataclass(frozen=True)
class Truncation:
    """Truncated backpropagation through time: the gradient reaches steps first..T only. Rules
    summed over the steps sum from ``first``; the notes say so (nothing, untruncated)."""

    steps: int
    first: int

    def __call__(self, rule):
        """The rule with its sum over the steps t starting at ``first``."""
        if self.first == 1:
            return rule
        t = index("t")
        return rule.replace(lambda e: isinstance(e, sp.Sum), lambda e: sp.Sum(e.function, *(
            (i, self.first, high) if i == t else (i, low, high) for i, low, high in e.limits)))

    @property
    def en(self) -> str:
        window = self.steps - self.first + 1
        return "" if self.first == 1 else f" (truncated: the last {window} steps only, from step {self.first})"

    @property
    def zh(self) -> str:
        window = self.steps - self.first + 1
        return "" if self.first == 1 else f"（截断：只取最后 {window} 步，从第 {self.first} 步起）"

    def no_gradient(self, arrays, dsource, n, e) -> list:
        """dL/dX = 0 at the steps before ``first``: no gradient reaches them."""
        if self.first == 1:
            return []
        t = index("t")
        zero = gradient_let(arrays.flat(dsource, n, t, e), sp.Integer(0), note=tr(
            "truncated backpropagation through time: no gradient reaches this step",
            "截断的随时间反向传播：没有梯度到达这一步"))
        return [Loop(t, self.first, (Loop(n, N, (Loop(e, arrays.inputs, (zero,)),)),), start=1)]


def _chain_rule(rule, arrays, text):
    """da[n,t,j] = dh[n,t,j] * (1 - h[n,t,j]^2) at step t: the upstream gradient times tanh's
    local derivative from the saved state (the transcript writes the local derivative as a line)."""
    n, t, d, j, *_ = _indices()
    dout, y = sp.Symbol("dout"), sp.Symbol("y")
    plain = rule.replace(lambda v: isinstance(v, sp.Indexed) and v.base.label.name in ("dh", "h"),
                         lambda v: dout if v.base.label.name == "dh" else y)
    notes = (tr(f"local derivative of tanh in {text}, from the saved state: 1 - h^2",
                f"{text} 中 tanh 的局部导数，由保存的状态得到：1 - h^2"),
             tr("chain rule: upstream gradient times local derivative", "链式法则：上游梯度乘以局部导数"))

    def at_step(step):
        target = arrays.at("da", n, step, j)
        names = {"dout": arrays.at("dh", n, step, j), "y": arrays.at("h", n, step, j)}
        return Assignments(((target, plain),), names, {target: gradient_comment(target, _read(plain, names))},
                           upstream="dout", notes={target: notes})
    return at_step


def _read(rule, names):
    """A chain rule over dout and y as it reads the kernel's arrays ``names`` gives them."""
    return rule.xreplace({sp.Symbol(name): value for name, value in names.items()})
