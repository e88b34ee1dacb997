"""Gated recurrent layers: an LSTM and a GRU unrolled over T steps, with backpropagation through time.

Like rnn(D,H,T) (symbolic/ops/recurrent.py) a sequence enters as (T, D) per example, the
kernels' X as an (N, T*D) array read X[n, t, d], and the layer gives the last state h[n,T,:].
The gates' weights are stacked as PyTorch stacks them: Wx (D, 4H), Wh (H, 4H), b (4H), the
columns in blocks i, f, g, o (column q = k*H + j is unit j of block k). Step t = 1..T computes

    a[n,t,q] = b[q] + sum_d x[n,t,d] Wx[d,q] + sum_k h[n,t-1,k] Wh[k,q]      (q < 4H)
    i = sigmoid(a[.., j]), f = sigmoid(a[.., H+j]), g = tanh(a[.., 2H+j]), o = sigmoid(a[.., 3H+j])
    c[n,t,j] = f c[n,t-1,j] + i g,    h[n,t,j] = o tanh(c[n,t,j])

from h[n,0,:] = c[n,0,:] = 0. SymPy derives each gate's local derivative from its saved output
(sigmoid' = y(1 - y), tanh' = 1 - y^2), the cell's and the state's local partials, and, from
contractions over the unrolled steps, the rules of backpropagation through time: the cell
state's path dL/dc[t-1] = dL/dc[t] f[t] beside the hidden path through Wh, and each shared
weight's gradient as a sum over the steps.

gru(D,H,T) follows PyTorch's convention (see GRU below): gates r, z and candidate n from two
stacked pre-activations, h_t = (1 - z) n + z h_{t-1}; its state has two paths back, directly
through z and through Wh.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..indexcalc import resolve
from ..ir import Assignments, Comment, Let, Loop, element, gradient_comment, gradient_let, index
from ..stable import Sigmoid, canonical_form
from ..text import tr
from .base import N, Derivation, Label, Step, _in_terms_of_output, fresh_name, real
# the sizes, spec, array view, products and truncation all recurrent layers share
from .recurrent import TRUNCATION, D, H, T, SequenceArrays, SequenceOp, Truncation, _read

INITIAL_STATE = "h[n,0,:] = c[n,0,:] = 0: the state and the cell before the first step"
STEPS_FROM_ONE = ("steps count from 1 to T: step t reads x_t, the row's inputs X[n, t-1, :], and the state "
                  "h[n,t-1,:] and cell c[n,t-1,:] the step before it left")
LSTM_GATES = (("i", "sigmoid", "input gate"), ("f", "sigmoid", "forget gate"), ("g", "tanh", "candidate"),
              ("o", "sigmoid", "output gate"))  # the order of the stacked columns (PyTorch's)

LSTM_GATE_GRADIENT_NOTES = {
    "i": tr("the input gate's gradient: dL/dc times the candidate it lets in", "输入门的梯度：dL/dc 乘以它放入的候选值"),
    "f": tr("the forget gate's gradient: dL/dc times the old cell it keeps", "遗忘门的梯度：dL/dc 乘以它保留的旧细胞状态"),
    "g": tr("the candidate's gradient: dL/dc times the input gate", "候选值的梯度：dL/dc 乘以输入门"),
    "o": tr("the output gate's gradient: dL/dh times tanh of the cell", "输出门的梯度：dL/dh 乘以细胞状态的 tanh")}


def _indices():
    return sp.symbols("n t d j k e m q u p", integer=True)


def activation_local(kind: str):
    """(forward, SymPy's local derivative, that derivative from the saved output y): sigmoid's
    y(1 - y) and tanh's 1 - y^2, derived, not written."""
    z, y = real("a"), real("y")
    forward = 1 / (1 + sp.exp(-z)) if kind == "sigmoid" else sp.tanh(z)
    local_ = sp.diff(forward, z)
    saved = _in_terms_of_output(canonical_form(local_, [z]), canonical_form(forward, [z]), y, [z])
    return forward, local_, saved


def _stable(kind, argument):
    """The activation as the kernels compute it (a sigmoid without overflow)."""
    return Sigmoid(argument) if kind == "sigmoid" else sp.tanh(argument)


def stacked_preactivation(blocks):
    """a[n,t,q] = b[q] + x_t Wx[:, q] + h_{t-1} Wh[:, q], and the BPTT rules SymPy derives from
    the contraction sum_{n,t,q} da[n,t,q] a[n,t,q] over the unrolled steps (q < blocks*H): the
    hidden path dL/dh[p,u,m] (from step u+1), dL/dx, and the shared weights' sums over the steps."""
    n, t, d, j, k, e, m, q, u, p = _indices()
    x, Wx, Wh, b, h, da = (sp.IndexedBase(s) for s in ("x", "Wx", "Wh", "b", "h", "da"))
    pre = b[q] + sp.Sum(x[n, t, d] * Wx[d, q], (d, 0, D - 1)) + sp.Sum(h[n, t - 1, k] * Wh[k, q], (k, 0, H - 1))
    w = sp.Symbol("w", integer=True)  # the contraction's column, apart from the q of Wx[e,q]
    L = sp.Sum(da[n, t, w] * pre.xreplace({q: w}), (n, 0, N - 1), (t, 1, T), (w, 0, blocks * H - 1))
    dWh = resolve(L.diff(Wh[m, q]))
    rules = {"dh_prev": resolve(L.diff(h[p, u, m]), shifted=True), "dx": resolve(L.diff(x[p, u, e])),
             "dWx": resolve(L.diff(Wx[e, q])), "dWh": dWh, "db": resolve(L.diff(b[q])),
             "dWh_step": sp.Sum(dWh.function, *(limit for limit in dWh.limits if limit[0] != t))}
    return pre, L, rules


@dataclass(frozen=True)
class LSTM(SequenceOp):
    """An LSTM over T steps: lstm(D, H, T) takes (T, D) sequences and gives the last state (H)."""

    name: str
    summary: str
    inputs: tuple[str, ...] = ("x", "Wx", "Wh", "b")

    def param_shapes(self, args, width):
        inputs, hidden, _ = args[:3]
        return [("Wx", (inputs, 4 * hidden)), ("Wh", (hidden, 4 * hidden)), ("b", (4 * hidden,))]

    def steps_back(self, args) -> int:
        """The last step, then each step down to the first the gradient reaches: the LSTM's
        kernel also passes that one's gradient back through Wh (to h_0 or the truncated
        past, where nothing reads it)."""
        return (args[2] > 1) + args[2] - self.first_step(args)

    def derive(self) -> Derivation:
        n, t, d, j, k, e, m, q, u, p = _indices()
        A, c, tc, h, dA, dc, dh = (sp.IndexedBase(s) for s in ("a", "c", "tc", "h", "da", "dc", "dh"))
        gate = {name: sp.IndexedBase(name) for name, _, _ in LSTM_GATES}
        dgate = {name: sp.IndexedBase(f"d{name}") for name, _, _ in LSTM_GATES}
        pre, contraction, rules = stacked_preactivation(4)
        steps = [Step("forward, step t = 1..T", A[n, t, q], pre,
                      "the stacked pre-activations of the four blocks i, f, g, o (q < 4H): x_t times Wx plus "
                      "the previous state times Wh plus the bias; h[n,0,:] = 0")]
        forward, backward = {"a": pre}, {}
        y = real("y")
        # each gate: its forward formula, SymPy's local derivative, that derivative from the saved gate
        for block, (name, kind, title) in enumerate(LSTM_GATES):
            raw, local_, saved = activation_local(kind)
            column = block * H + j
            forward[name] = _stable(kind, A[n, t, column])
            steps += [Step(f"forward, {title}", gate[name][n, t, j], raw.xreplace({real("a"): A[n, t, column]}),
                           f"{kind} of block {block} of the pre-activations (column {column})"),
                      Step(f"local derivative d{name}/da", Label(f"d{name}/da", rf"\frac{{\partial {name}}}"
                                                                 rf"{{\partial a}}"), local_, "SymPy's diff"),
                      Step("in terms of the saved output", Label(f"d{name}/da", rf"\frac{{\partial {name}}}"
                                                                 rf"{{\partial a}}"), saved, f"substituting {name} = {kind}(a)")]
            backward[f"da_{name}"] = dgate[name][n, t, j] * saved.xreplace({y: gate[name][n, t, j]})
        i, f, g, o = (gate[name][n, t, j] for name in "ifgo")
        cell = f * c[n, t - 1, j] + i * g
        state = o * sp.tanh(c[n, t, j])
        forward |= {"c": cell, "tc": sp.tanh(c[n, t, j]), "h": o * tc[n, t, j]}
        steps += [Step("forward, the cell", c[n, t, j], cell, "keep f of the old cell, add i of the candidate; c[n,0,:] = 0"),
                  Step("forward, the state", h[n, t, j], state, "the output gate times tanh of the cell")]
        for out, rule, ins in ((c, cell, (gate["f"], gate["i"], gate["g"])), (h, state, (gate["o"],))):
            for var in ins:
                steps.append(Step(f"local partial of {out} by {var}", Label(f"d{out}/d{var}", rf"\frac{{\partial {out}}}"
                                                                          rf"{{\partial {var}}}"),
                                  sp.diff(rule, var[n, t, j]), "SymPy's diff"))
        steps.append(Step("local partial of c by the previous cell", Label("dc[n,t,j]/dc[n,t-1,j]", r"\frac{\partial c_t}"
                                                                           r"{\partial c_{t-1}}"),
                          sp.diff(cell, c[n, t - 1, j]), "SymPy's diff: the forget gate"))
        h_by_c = sp.diff(state, c[n, t, j])
        steps += [Step("local partial of h by c", Label("dh/dc", r"\frac{\partial h}{\partial c}"), h_by_c, "SymPy's diff"),
                  Step("in terms of the saved tanh of the cell", Label("dh/dc", r"\frac{\partial h}{\partial c}"),
                       h_by_c.xreplace({sp.tanh(c[n, t, j]): tc[n, t, j]}), "tc = tanh(c), kept from the forward pass")]
        # backpropagation through time: the contractions over every row, step and unit of the
        # unrolled cells and states, differentiated by one element of each value
        Lc = sp.Sum(dc[n, t, j] * cell, (n, 0, N - 1), (t, 1, T), (j, 0, H - 1))
        Lh = sp.Sum(dh[n, t, j] * state, (n, 0, N - 1), (t, 1, T), (j, 0, H - 1))
        saved_tanh = {sp.tanh(c[p, u, m]): tc[p, u, m]}
        through_h = resolve(Lh.diff(c[p, u, m])).xreplace(saved_tanh)
        cell_path = resolve(Lc.diff(c[p, u, m]), shifted=True)
        through_h = sp.collect(sp.expand(through_h), dh[p, u, m] * gate["o"][p, u, m])
        backward |= {"dc": through_h + cell_path,
                     "do": resolve(Lh.diff(gate["o"][p, u, m])).xreplace(saved_tanh),
                     **{f"d{name}": resolve(Lc.diff(gate[name][p, u, m])) for name in "ifg"}}
        backward |= rules
        steps += [Step("chain rule over the unrolled cells", Label("dL", "dL"), Lc + Lh,
                       "dc and dh: the gradients reaching each cell and state from everything that reads it"),
                  Step("differentiate by c[p,u,m]: two paths back", dc[p, u, m], backward["dc"],
                       "through the state h_u = o tanh(c_u), and the cell state's path from step u+1 through its "
                       "forget gate (dc[p,T+1,:] reads as 0)"),
                  *(Step(f"differentiate by {name}[p,u,m]", dgate[name][p, u, m], backward[f"d{name}"],
                         "the gate's gradient from the cell or the state it feeds") for name in "ifgo"),
                  *(Step(f"backward (chain rule: upstream times local), {name}", dA[n, t, sp.Symbol(f"q_{name}")],
                         backward[f"da_{name}"], f"column q_{name} = {block}H + j of the stacked pre-activations")
                    for block, (name, _, _) in enumerate(LSTM_GATES)),
                  Step("chain rule over the stacked pre-activations", Label("dL", "dL"), contraction,
                       "every step uses the same Wx, Wh, b"),
                  Step("differentiate by h[p,u,m]: the hidden path back", dh[p, u, m], rules["dh_prev"],
                       "only step u+1 reads h[p,u,:]; at u = T the layer above gives dL/dh[p,T,:]"),
                  Step("differentiate by x[p,u,e]", sp.IndexedBase("dx")[p, u, e], rules["dx"], "deltas sifted"),
                  Step("differentiate by Wx[e,q]", sp.IndexedBase("dWx")[e, q], rules["dWx"],
                       "a shared weight: summed over the steps"),
                  Step("differentiate by Wh[m,q]", sp.IndexedBase("dWh")[m, q], rules["dWh"],
                       "a shared weight: the sum over the steps of each step's contribution"),
                  Step("step t's contribution to dWh", sp.IndexedBase("dWh_step")[t, m, q], rules["dWh_step"],
                       "the state it read times its pre-activations' gradients, summed over the batch"),
                  Step("differentiate by b[q]", sp.IndexedBase("db")[q], rules["db"], "summed over the batch and the steps")]
        return Derivation(self.name, self.summary, self.inputs, forward, backward, ("x", "i", "f", "g", "o", "c", "tc", "h"),
                          steps, [STEPS_FROM_ONE, INITIAL_STATE, TRUNCATION.replace("NAME", self.name)],
                          ["di/da = i(1 - i), dg/da = 1 - g^2, dh/dc = o(1 - tc^2) read saved values: no exp, "
                           "finite for every input"], dict(backward))

    def lower(self, lowering, use):
        """Forward: the steps in order, each cell and state from the ones before. Backward, row
        by row from the last step to the first: the cell's gradient (through the state and along
        the cell state's path), the gates', the stacked pre-activations', the hidden path through
        Wh; then each parameter's gradient summed over the batch and the steps, dWh step by step."""
        inputs, hidden, steps = use.args[:3]
        truncated = Truncation(steps, self.first_step(use.args))
        layer, source = lowering.names.layer, lowering.values[-1]
        Wx, Wh, b = (lowering.names.params[role] for role in ("Wx", "Wh", "b"))
        lowering.params += [(Wx, (inputs, 4 * hidden)), (Wh, (hidden, 4 * hidden)), (b, (4 * hidden,))]
        out = lowering.buffer(lowering.names.value, (N, hidden))
        taken = {name for name, _ in lowering.buffers + lowering.params} | set(lowering.values)
        names = {}
        for role, stem, width in (("a", "a", 4), *((name, name, 1) for name in "ifgo"), ("c", "cs", 1),
                                  ("tc", "tc", 1), ("h", "hs", 1)):
            names[role] = fresh_name(f"{stem}{layer}", taken)
            taken.add(names[role])
            lowering.buffer(names[role], (N, steps + 1, width * hidden))  # [n, 0, :]: h_0 and c_0, else unused
        lowering.scratch += [names[role] for role in ("a", "i", "f", "g", "o", "c", "tc", "h")]
        d = lowering.derivation(self)
        n, t, dd, j, k, e, m, q, u, p = _indices()
        arrays = _Arrays(source, inputs, {**names, "Wx": Wx, "Wh": Wh, "b": b,
                                          **{f"d{role}": f"d{array}" for role, array in names.items()}},
                         {D: inputs, H: hidden, T: steps})
        at = arrays.at
        what = f"layer {use.position}: {use.text}"
        notes = {"i": tr("the input gate: sigmoid of its pre-activation", "输入门：其预激活值的 sigmoid"),
                 "f": tr("the forget gate: sigmoid of its pre-activation", "遗忘门：其预激活值的 sigmoid"),
                 "g": tr("the candidate: tanh of its pre-activation", "候选值：其预激活值的 tanh"),
                 "o": tr("the output gate: sigmoid of its pre-activation", "输出门：其预激活值的 sigmoid"),
                 "c": tr("the new cell: f times the old cell plus i times the candidate",
                         "新细胞状态：f 乘旧细胞状态，加上 i 乘候选值"),
                 "tc": tr("tanh of the new cell", "新细胞状态的 tanh"),
                 "h": tr("the new state: the output gate times tanh of the cell", "新状态：输出门乘以细胞状态的 tanh")}
        cell_step = tuple(Let(at(role, n, t, j), arrays.named(d.forward[role]), note=notes[role])
                          for role in ("i", "f", "g", "o", "c", "tc", "h"))
        products = arrays.products(lowering, hidden, 4 * hidden, steps)
        stacked = arrays.product_summed(at("a", n, t, q), d.forward["a"], tr(
            f"{use.text}, step t: the stacked pre-activations of i, f, g, o: the bias, plus x_t times Wx, "
            "plus the previous state times Wh",
            f"{use.text}，第 t 步：i、f、g、o 的堆叠预激活值：偏置，加上 x_t 乘 Wx，再加上前一状态乘 Wh"),
            products.reads(n, t, q))
        forward = [products.inputs,
                   Loop(n, N, (Loop(j, hidden, (Let(at("h", n, 0, j), sp.Integer(0), note=tr(
                       "the initial state h_0 = 0", "初始状态 h_0 = 0")), Let(at("c", n, 0, j), sp.Integer(0), note=tr(
                           "the initial cell c_0 = 0", "初始细胞状态 c_0 = 0")))),)),
                   Loop(t, steps + 1, (products.state(t), Loop(n, N, (Loop(q, 4 * hidden, (stacked,)),
                                                                       Loop(j, hidden, cell_step)))), start=1),
                   Loop(n, N, (Loop(j, hidden, (Let(element(out, "n", "j"), at("h", n, steps, j), note=tr(
                       f"the layer's output is the last state h_{steps}", f"该层的输出为最后的状态 h_{steps}")),)),))]
        lowering.forward += [Comment(f"{what} ({steps} steps of {inputs} -> {hidden} states, cells and gates i, f, g, o)"),
                             *forward]

        for role in ("a", "c", "h"):  # the gates' gradients live in locals (below): no arrays
            lowering.buffer(f"d{names[role]}", (N, steps + 1, (4 if role == "a" else 1) * hidden))
        gate_gradients = tuple(f"d{names[name]}" for name, _, _ in LSTM_GATES)

        def back_step(s, last):
            """Step s's gradients, from dL/dh[n,s,:] (and, before the last step, dL/dc[n,s+1,:])."""
            rule = lambda name: arrays.named(d.backward[name].xreplace({p: n, u: s, m: j}))  # noqa: E731
            cell = d.backward["dc"].xreplace({p: n, u: s, m: j})
            if last:  # nothing after the last step: the cell state's path is empty
                cell = cell.xreplace({sp.IndexedBase("dc")[n, s + 1, j]: 0})
            body = [gradient_let(at("dc", n, s, j), arrays.named(cell), note=tr(
                "the cell's gradient: through the state (dL/dh o (1 - tanh(c)^2))" +
                ("" if last else ", plus the cell state's path from the next step (its dL/dc times its forget gate)"),
                "细胞状态的梯度：经由状态（dL/dh o (1 - tanh(c)^2））" + ("" if last else "，加上来自下一步的细胞状态路径（其 dL/dc 乘其遗忘门）")))]
            body += [gradient_let(at(f"d{name}", n, s, j), rule(f"d{name}"), note=LSTM_GATE_GRADIENT_NOTES[name])
                     for name, _, _ in LSTM_GATES]
            for block, (name, kind, title) in enumerate(LSTM_GATES):
                body.append(_chain_rule(d.backward[f"da_{name}"], arrays, name, kind, n, s, j, block * hidden, use.text))
            # each gate's gradient is read only by its chain-rule line: a local, not an array
            statements = [Loop(n, N, (Loop(j, hidden, tuple(body), in_locals=gate_gradients),))]
            if s != 1:
                statements += [products.back(s), Loop(n, N, (Loop(m, hidden, (arrays.product_summed(
                    at("dh", n, s - 1, m), d.backward["dh_prev"].xreplace({p: n, u: s - 1}), tr(
                        "back through time: step t's pre-activation gradients times Wh (the hidden path)",
                        "沿时间反向：第 t 步预激活值的梯度乘以 Wh（隐藏状态路径）"), products.back_reads(n, m)),)),))]
            return statements

        r = index("r")
        rows = [Loop(n, N, (Loop(j, hidden, (gradient_let(at("dh", n, steps, j), element(f"d{out}", "n", "j"), note=tr(
            f"the last state's gradient: the upstream gradient dL/d{out}", f"最后状态的梯度：上游梯度 dL/d{out}")),)),)),
            *([products.transposed_state_weights()] if steps > 1 else []), *back_step(steps, True)]
        if steps > truncated.first:
            rows.append(Loop(r, steps - truncated.first, tuple(back_step(steps - 1 - r, False))))
        backward = [Comment(f"{what}: back through time{truncated.en}"), *rows,
                    *arrays.parameter_gradients(lowering, products, truncated, d.backward, Wx, Wh,
                                                [(b, d.backward["db"], products.into_x)], 4 * hidden, hidden)]
        if source != "X" or lowering.input_gradient:
            backward += arrays.input_gradient(lowering, products, truncated, d.backward["dx"], source)
        lowering.prepend_backward(backward)
        lowering.values.append(out)
        lowering.widths.append(hidden)


class _Arrays(SequenceArrays):
    """The recurrent families' arrays view, with the gated families' shared backward pieces."""

    def parameter_gradients(self, lowering, products, truncated, rules, Wx, Wh, biases, columns, hidden) -> list:
        """Each step's contribution to dWh, then dWh as their sum, dWx and each bias's gradient
        (``biases``: (name, rule, the gradients it sums)): the shared weights' gradients, summed over the batch and the
        steps (from ``truncated.first``). The kernel computes dWx and dWh by one product per step."""
        n, t, dd, j, k, e, m, q, u, p = _indices()
        steps, first = truncated.steps, truncated.first
        step_buffer = lowering.buffer(f"d{Wh}_step", (steps + 1, hidden, columns))  # [0] is never written
        dWx, dWh = (lowering.buffer(f"d{name}", shape) for name, shape in
                    ((Wx, (self.inputs, columns)), (Wh, (hidden, columns))))
        statements = [
            *products.weight_gradients(first),
            Loop(t, steps + 1, (Loop(m, hidden, (Loop(q, columns, (self.product_summed(
                sp.IndexedBase(step_buffer)[t, m, q], rules["dWh_step"], tr(
                    f"step t's contribution to dL/d{Wh}: the state it read times its pre-activations' gradients",
                    f"第 t 步对 dL/d{Wh} 的贡献：它读入的状态乘以其预激活值的梯度")),)),)),), start=first),
            Loop(m, hidden, (Loop(q, columns, (self.product_summed(
                sp.IndexedBase(dWh)[m, q], sp.Sum(sp.IndexedBase(step_buffer)[t, m, q], (t, first, T)), tr(
                    f"{Wh} is shared by every step: its gradient is the sum of the steps' contributions" + truncated.en,
                    f"{Wh} 被每一步共享：其梯度为各步贡献之和" + truncated.zh)),)),)),
            Loop(e, self.inputs, (Loop(q, columns, (self.product_summed(
                sp.IndexedBase(dWx)[e, q], truncated(rules["dWx"]), tr(
                    f"{Wx} is shared by every step: x_t times step t's pre-activation gradients, summed over the "
                    "batch and the steps" + truncated.en,
                    f"{Wx} 被每一步共享：x_t 乘以第 t 步预激活值的梯度，对批量和各步求和" + truncated.zh)),)),))]
        for bias, rule, into in biases:
            grad = lowering.buffer(f"d{bias}", (columns,))
            statements += [products.bias_gradient(bias, into, first), Loop(q, columns, (self.product_summed(
                sp.IndexedBase(grad)[q], truncated(rule), tr(
                    "the pre-activation gradients summed over the batch and the steps" + truncated.en,
                    "预激活值的梯度对批量和各步求和" + truncated.zh)),))]
        return statements

    def input_gradient(self, lowering, products, truncated, rule, source) -> list:
        """dL/dX: each step's pre-activation gradients carried back through Wx (rule: dx[p,u,e]),
        one product per step; zero before the first step a truncated gradient reaches."""
        n, t, dd, j, k, e, m, q, u, p = _indices()
        steps = truncated.steps
        lowering.buffer(f"d{source}", (N, steps * self.inputs))
        carried = self.product_summed(self.flat(f"d{source}", n, t, e), rule.xreplace({p: n, u: t}), tr(
            f"the pre-activation gradients carried back through {self.names['Wx']}",
            f"预激活值的梯度经 {self.names['Wx']} 传回"), products.input_reads(n, e))
        return [*truncated.no_gradient(self, f"d{source}", n, e), Loop(t, steps + 1, (
            products.input_gradient(t), Loop(n, N, (Loop(e, self.inputs, (carried,)),))), start=truncated.first)]


def _chain_rule(rule, arrays, name, kind, n, s, j, offset, text, pre="da", shown=None):
    """da[n,s,offset+j] = d<gate>[n,s,j] * (its activation's local derivative from the saved
    gate): the transcript writes the local derivative as a line of its own."""
    dout, y = sp.Symbol("dout"), sp.Symbol("y")
    plain = rule.replace(lambda v: isinstance(v, sp.Indexed) and v.base.label.name in (name, f"d{name}"),
                         lambda v: dout if v.base.label.name == f"d{name}" else y)
    local_text = "y (1 - y)" if kind == "sigmoid" else "1 - y^2"
    shown = shown or name  # the value's name in the notes (the GRU's candidate hc is n)
    notes = (tr(f"local derivative of {kind} in {text}, from the saved {shown}: {local_text}",
                f"{text} 中 {kind} 的局部导数，由保存的 {shown} 得到：{local_text}"),
             tr("chain rule: upstream gradient times local derivative", "链式法则：上游梯度乘以局部导数"))
    target = arrays.at(pre, n, s, offset + j)
    names = {"dout": arrays.at(f"d{name}", n, s, j), "y": arrays.at(name, n, s, j)}
    return Assignments(((target, plain),), names, {target: gradient_comment(target, _read(plain, names))},
                       upstream="dout", notes={target: notes})


GRU_GATES = (("r", "sigmoid", "reset gate"), ("z", "sigmoid", "update gate"))  # blocks 0 and 1; the candidate is block 2


@dataclass(frozen=True)
class GRU(SequenceOp):
    """A GRU over T steps, PyTorch's convention: gru(D, H, T) takes (T, D) sequences and gives
    the last state (H). Two stacked pre-activations per step, ax = x_t Wx + bx and
    ah = h_{t-1} Wh + bh (columns in blocks r, z, n), and

        r = sigmoid(ax_r + ah_r), z = sigmoid(ax_z + ah_z), n = tanh(ax_n + r ah_n),
        h_t = (1 - z) n + z h_{t-1}

    (the reset gate scales the recurrent term after its product with Wh, as PyTorch and cuDNN do).
    Kernel and transcript names: r1, z1, n1 the gates and candidate, hs1 the states."""

    name: str
    summary: str
    inputs: tuple[str, ...] = ("x", "Wx", "Wh", "bx", "bh")

    def param_shapes(self, args, width):
        inputs, hidden, _ = args[:3]
        return [("Wx", (inputs, 3 * hidden)), ("Wh", (hidden, 3 * hidden)), ("bx", (3 * hidden,)),
                ("bh", (3 * hidden,))]

    def derive(self) -> Derivation:
        n, t, d, j, k, e, m, q, u, p = _indices()
        w = sp.Symbol("w", integer=True)
        x, Wx, Wh, bx, bh, h, ax, ah, dax, dah = (sp.IndexedBase(s) for s in (
            "x", "Wx", "Wh", "bx", "bh", "h", "ax", "ah", "dax", "dah"))
        r, z, hc, dh, dr, dz, dhc = (sp.IndexedBase(s) for s in ("r", "z", "hc", "dh", "dr", "dz", "dhc"))
        pre_x = bx[q] + sp.Sum(x[n, t, d] * Wx[d, q], (d, 0, D - 1))
        pre_h = bh[q] + sp.Sum(h[n, t - 1, k] * Wh[k, q], (k, 0, H - 1))
        gate_pre = {"r": ax[n, t, j] + ah[n, t, j], "z": ax[n, t, H + j] + ah[n, t, H + j]}
        cand_pre = ax[n, t, 2 * H + j] + r[n, t, j] * ah[n, t, 2 * H + j]
        state = (1 - z[n, t, j]) * hc[n, t, j] + z[n, t, j] * h[n, t - 1, j]
        forward = {"ax": pre_x, "ah": pre_h, **{name: _stable(kind, gate_pre[name]) for name, kind, _ in GRU_GATES},
                   "hc": sp.tanh(cand_pre), "h": state}
        steps = [Step("forward, step t = 1..T: the input's part", ax[n, t, q], pre_x,
                      "the stacked pre-activations of the blocks r, z, n (q < 3H) from x_t"),
                 Step("forward: the state's part", ah[n, t, q], pre_h,
                      "the same blocks from the previous state h_{t-1} (h[n,0,:] = 0)")]
        y = real("y")
        locals_ = {}
        for name, kind, title in GRU_GATES:
            raw, local_, saved = activation_local(kind)
            locals_[name] = saved
            steps += [Step(f"forward, {title}", sp.IndexedBase(name)[n, t, j], raw.xreplace({real("a"): gate_pre[name]}),
                           f"{kind} of its blocks of both pre-activations"),
                      Step(f"local derivative d{name}/da", Label(f"d{name}/da", rf"\frac{{\partial {name}}}{{\partial a}}"),
                           local_, "SymPy's diff"),
                      Step("in terms of the saved output", Label(f"d{name}/da", rf"\frac{{\partial {name}}}{{\partial a}}"),
                           saved, f"substituting {name} = {kind}(a)")]
        _, tanh_local, tanh_saved = activation_local("tanh")
        steps += [Step("forward, the candidate", hc[n, t, j], sp.tanh(cand_pre),
                       "tanh of the input's block n plus the reset gate times the state's block n"),
                  Step("local derivative dn/da", Label("dn/da", r"\frac{\partial n}{\partial a}"), tanh_local, "SymPy's diff"),
                  Step("in terms of the saved output", Label("dn/da", r"\frac{\partial n}{\partial a}"), tanh_saved,
                       "substituting n = tanh(a)"),
                  Step("forward, the state", h[n, t, j], state, "between the candidate (1 - z) and the old state (z)")]
        for var in (z[n, t, j], hc[n, t, j], h[n, t - 1, j]):
            steps.append(Step(f"local partial of h by {var}", Label(f"dh/d{var}", rf"\frac{{\partial h}}{{\partial {var.base}}}"),
                              sp.diff(state, var), "SymPy's diff"))
        for var in (r[n, t, j], ah[n, t, 2 * H + j]):
            steps.append(Step(f"local partial of the candidate's pre-activation by {var}",
                              Label(f"da_n/d{var}", rf"\frac{{\partial a_n}}{{\partial {var.base}}}"), sp.diff(cand_pre, var),
                              "SymPy's diff"))
        # backpropagation through time: contractions over the unrolled states, the candidates'
        # pre-activations and the two stacked pre-activations
        Lh = sp.Sum(dh[n, t, j] * state, (n, 0, N - 1), (t, 1, T), (j, 0, H - 1))
        Ln = sp.Sum(dax[n, t, 2 * H + j] * cand_pre, (n, 0, N - 1), (t, 1, T), (j, 0, H - 1))
        Lx = sp.Sum(dax[n, t, w] * pre_x.xreplace({q: w}), (n, 0, N - 1), (t, 1, T), (w, 0, 3 * H - 1))
        Lw = sp.Sum(dah[n, t, w] * pre_h.xreplace({q: w}), (n, 0, N - 1), (t, 1, T), (w, 0, 3 * H - 1))
        dWh = resolve(Lw.diff(Wh[m, q]))
        ahn = sp.IndexedBase("ahn")  # the state's block n as an array of its own, so its deltas sift
        by_block_n = Ln.xreplace({ah[n, t, 2 * H + j]: ahn[n, t, j]})
        backward = {
            "dz": sp.factor_terms(resolve(Lh.diff(z[p, u, m]))), "dhc": sp.factor_terms(resolve(Lh.diff(hc[p, u, m]))),
            "da_n": dhc[n, t, j] * tanh_saved.xreplace({y: hc[n, t, j]}),
            "dr": resolve(Ln.diff(r[p, u, m])),
            "dah_n": resolve(by_block_n.diff(ahn[p, u, m])).xreplace({ahn[p, u, m]: ah[p, u, 2 * H + m]}),
            "da_r": dr[n, t, j] * locals_["r"].xreplace({y: r[n, t, j]}),
            "da_z": dz[n, t, j] * locals_["z"].xreplace({y: z[n, t, j]}),
            "dh_prev": resolve(Lh.diff(h[p, u, m]), shifted=True) + resolve(Lw.diff(h[p, u, m]), shifted=True),
            "dx": resolve(Lx.diff(x[p, u, e])), "dWx": resolve(Lx.diff(Wx[e, q])), "dbx": resolve(Lx.diff(bx[q])),
            "dWh": dWh, "dbh": resolve(Lw.diff(bh[q])),
            "dWh_step": sp.Sum(dWh.function, *(limit for limit in dWh.limits if limit[0] != t))}
        steps += [Step("chain rule over the unrolled steps", Label("dL", "dL"), Lh + Ln + Lx + Lw,
                       "dh, the candidates' and the stacked pre-activations' gradients, each times the change in "
                       "what it multiplies"),
                  Step("differentiate by z[p,u,m]", dz[p, u, m], backward["dz"], "the update gate's gradient"),
                  Step("differentiate by hc[p,u,m], the candidate n", dhc[p, u, m], backward["dhc"], "the candidate's gradient"),
                  Step("backward (chain rule: upstream times local), n", dax[n, t, 2 * H + j], backward["da_n"],
                       "the candidate's pre-activation: the input's block n takes it whole"),
                  Step("differentiate by r[p,u,m]", dr[p, u, m], backward["dr"], "the reset gate's gradient"),
                  Step("differentiate by ah[p,u,2H+m]", dah[p, u, 2 * H + m], backward["dah_n"],
                       "the state's block n reaches the candidate through the reset gate"),
                  Step("backward (chain rule: upstream times local), r", dax[n, t, j], backward["da_r"],
                       "both pre-activations' block r take it whole: dah[n,t,j] = dax[n,t,j]"),
                  Step("backward (chain rule: upstream times local), z", dax[n, t, H + j], backward["da_z"],
                       "both pre-activations' block z take it whole: dah[n,t,H+j] = dax[n,t,H+j]"),
                  Step("differentiate by h[p,u,m]: two paths back", dh[p, u, m], backward["dh_prev"],
                       "step u+1 keeps z of h_u directly, and reads it through Wh; at u = T the layer above gives "
                       "dL/dh[p,T,:]"),
                  Step("differentiate by x[p,u,e]", sp.IndexedBase("dx")[p, u, e], backward["dx"], "deltas sifted"),
                  Step("differentiate by Wx[e,q]", sp.IndexedBase("dWx")[e, q], backward["dWx"],
                       "a shared weight: summed over the steps"),
                  Step("differentiate by Wh[m,q]", sp.IndexedBase("dWh")[m, q], dWh,
                       "a shared weight: the sum over the steps of each step's contribution"),
                  Step("step t's contribution to dWh", sp.IndexedBase("dWh_step")[t, m, q], backward["dWh_step"],
                       "the state it read times its pre-activations' gradients, summed over the batch"),
                  *(Step(f"differentiate by {bias}[q]", sp.IndexedBase(f"d{bias}")[q], backward[f"d{bias}"],
                         "summed over the batch and the steps") for bias in ("bx", "bh"))]
        return Derivation(self.name, self.summary, self.inputs, forward, backward, ("x", "ah", "r", "z", "hc", "h"),
                          steps, [STEPS_FROM_ONE.replace(" and cell c[n,t-1,:]", ""),
                                  "h[n,0,:] = 0: the state before the first step",
                                  "PyTorch's convention: h_t = (1 - z) n + z h_{t-1}, the reset gate applied to "
                                  "h_{t-1} Wh + bh (not to h_{t-1} before the product)",
                                  TRUNCATION.replace("NAME", self.name)],
                          ["dr/da = r(1 - r), dz/da = z(1 - z), dn/da = 1 - n^2 read saved values: no exp, "
                           "finite for every input"], dict(backward))

    def lower(self, lowering, use):
        """Forward: each step's two stacked pre-activations, its gates, candidate and state.
        Backward, row by row from the last step to the first: the update gate's and the
        candidate's gradients, the candidate's pre-activation's, the reset gate's, the stacked
        pre-activations', and the state before (directly through z, and through Wh); then each
        parameter's gradient summed over the batch and the steps, dWh step by step."""
        inputs, hidden, steps = use.args[:3]
        truncated = Truncation(steps, self.first_step(use.args))
        layer, source = lowering.names.layer, lowering.values[-1]
        Wx, Wh, bx, bh = (lowering.names.params[role] for role in ("Wx", "Wh", "bx", "bh"))
        lowering.params += [(Wx, (inputs, 3 * hidden)), (Wh, (hidden, 3 * hidden)), (bx, (3 * hidden,)),
                            (bh, (3 * hidden,))]
        out = lowering.buffer(lowering.names.value, (N, hidden))
        taken = {name for name, _ in lowering.buffers + lowering.params} | set(lowering.values)
        names = {}
        for role, stem, width in (("ax", "ax", 3), ("ah", "ah", 3), ("r", "r", 1), ("z", "z", 1), ("hc", "n", 1),
                                  ("h", "hs", 1)):
            names[role] = fresh_name(f"{stem}{layer}", taken)
            taken.add(names[role])
            lowering.buffer(names[role], (N, steps + 1, width * hidden))
        lowering.scratch += list(names.values())
        d = lowering.derivation(self)
        n, t, dd, j, k, e, m, q, u, p = _indices()
        arrays = _Arrays(source, inputs, {**names, "Wx": Wx, "Wh": Wh, "bx": bx, "bh": bh,
                                          **{f"d{role}": f"d{array}" for role, array in names.items()}},
                         {D: inputs, H: hidden, T: steps})
        at = arrays.at
        what = f"layer {use.position}: {use.text}"
        notes = {"r": tr("the reset gate: sigmoid of both pre-activations' block r", "重置门：两个预激活值 r 块之和的 sigmoid"),
                 "z": tr("the update gate: sigmoid of both pre-activations' block z", "更新门：两个预激活值 z 块之和的 sigmoid"),
                 "hc": tr("the candidate: tanh of the input's block n plus the reset gate times the state's",
                          "候选状态：输入的 n 块加上重置门乘以状态的 n 块，再取 tanh"),
                 "h": tr("the new state: (1 - z) times the candidate plus z times the old state",
                         "新状态：(1 - z) 乘候选状态，加上 z 乘旧状态")}
        step_values = tuple(Let(at(role, n, t, j), arrays.named(d.forward[role]), note=notes[role])
                            for role in ("r", "z", "hc", "h"))
        products = arrays.products(lowering, hidden, 3 * hidden, steps, into_x="dax", into_h="dah")
        stacked = (Loop(q, 3 * hidden, (arrays.product_summed(at("ax", n, t, q), d.forward["ax"], tr(
            f"{use.text}, step t: the input's pre-activations of r, z, n: the bias bx plus x_t times Wx",
            f"{use.text}，第 t 步：输入对 r、z、n 的预激活值：偏置 bx 加上 x_t 乘 Wx"), products.reads(n, t, q)),)),
            Loop(q, 3 * hidden, (arrays.product_summed(at("ah", n, t, q), d.forward["ah"], tr(
                "the state's pre-activations of r, z, n: the bias bh plus the previous state times Wh",
                "状态对 r、z、n 的预激活值：偏置 bh 加上前一状态乘 Wh"), products.reads(n, t, q)),)))
        forward = [products.inputs,
                   Loop(n, N, (Loop(j, hidden, (Let(at("h", n, 0, j), sp.Integer(0), note=tr(
                       "the initial state h_0 = 0", "初始状态 h_0 = 0")),)),)),
                   Loop(t, steps + 1, (products.state(t), Loop(n, N, (*stacked, Loop(j, hidden, step_values)))),
                        start=1),
                   Loop(n, N, (Loop(j, hidden, (Let(element(out, "n", "j"), at("h", n, steps, j), note=tr(
                       f"the layer's output is the last state h_{steps}", f"该层的输出为最后的状态 h_{steps}")),)),))]
        lowering.forward += [Comment(f"{what} ({steps} steps of {inputs} -> {hidden} states, gates r, z, candidate n)"),
                             *forward]
        for role in ("ax", "ah", "h"):  # the gates' and the candidate's gradients live in locals (below)
            lowering.buffer(f"d{names[role]}", (N, steps + 1, (3 if role in ("ax", "ah") else 1) * hidden))
        read_once = tuple(f"d{names[role]}" for role in ("z", "hc", "r"))

        def back_step(s):
            """Step s's gradients, from dL/dh[n,s,:]."""
            rule = lambda name: arrays.named(d.backward[name].xreplace({p: n, u: s, m: j}))  # noqa: E731
            body = [gradient_let(at("dz", n, s, j), rule("dz"), note=tr(
                        "the update gate's gradient: dL/dh times (old state - candidate)",
                        "更新门的梯度：dL/dh 乘以（旧状态 - 候选状态）")),
                    gradient_let(at("dhc", n, s, j), rule("dhc"), note=tr(
                        "the candidate's gradient: dL/dh times (1 - z)", "候选状态的梯度：dL/dh 乘以 (1 - z)")),
                    _chain_rule(d.backward["da_n"], arrays, "hc", "tanh", n, s, j, 2 * hidden, use.text, "dax", "n"),
                    gradient_let(at("dr", n, s, j), rule("dr"), note=tr(
                        "the reset gate's gradient: the candidate's pre-activation gradient times the state's block n",
                        "重置门的梯度：候选状态预激活值的梯度乘以状态的 n 块")),
                    gradient_let(at("dah", n, s, 2 * hidden + j), arrays.named(d.backward["dah_n"].xreplace({p: n, u: s, m: j})),
                        note=tr("the state's block n: the candidate's pre-activation gradient times the reset gate",
                                "状态的 n 块：候选状态预激活值的梯度乘以重置门")),
                    _chain_rule(d.backward["da_r"], arrays, "r", "sigmoid", n, s, j, 0, use.text, "dax"),
                    _chain_rule(d.backward["da_z"], arrays, "z", "sigmoid", n, s, j, hidden, use.text, "dax"),
                    *(gradient_let(at("dah", n, s, block * hidden + j), at("dax", n, s, block * hidden + j), note=tr(
                        "the same gradient: the gate adds both pre-activations' block", "梯度相同：该门把两个预激活值的这一块相加"))
                      for block in (0, 1))]
            # dz, dn and dr are read only by the lines after them in this pass: locals, not arrays
            statements = [Loop(n, N, (Loop(j, hidden, tuple(body), in_locals=read_once),))]
            if s != 1:
                statements += [products.back(s), Loop(n, N, (Loop(m, hidden, (arrays.product_summed(
                    at("dh", n, s - 1, m), d.backward["dh_prev"].xreplace({p: n, u: s - 1}), tr(
                        "back through time: z times this step's dL/dh (the direct path), plus the state's "
                        "pre-activation gradients times Wh",
                        "沿时间反向：z 乘本步的 dL/dh（直接路径），加上状态预激活值的梯度乘以 Wh"), products.back_reads(n, m)),)),))]
            return statements

        r = index("r")
        rows = [Loop(n, N, (Loop(j, hidden, (gradient_let(at("dh", n, steps, j), element(f"d{out}", "n", "j"), note=tr(
            f"the last state's gradient: the upstream gradient dL/d{out}", f"最后状态的梯度：上游梯度 dL/d{out}")),)),)),
            *([products.transposed_state_weights()] if steps > 1 else []),
            *([Loop(r, steps - truncated.first, tuple(back_step(steps - r)))] if steps > truncated.first else []),
            *back_step(truncated.first)]
        backward = [Comment(f"{what}: back through time{truncated.en}"), *rows,
                    *arrays.parameter_gradients(lowering, products, truncated, d.backward, Wx, Wh,
                                                [(bx, d.backward["dbx"], products.into_x),
                                                 (bh, d.backward["dbh"], products.into_h)], 3 * hidden, hidden)]
        if source != "X" or lowering.input_gradient:
            backward += arrays.input_gradient(lowering, products, truncated, d.backward["dx"], source)
        lowering.prepend_backward(backward)
        lowering.values.append(out)
        lowering.widths.append(hidden)
