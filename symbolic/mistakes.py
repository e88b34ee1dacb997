"""A learner's common mistakes, made on any transcript: the one place the checker's
"forgot the sigmoid derivative", "used the updated weight", "forgot the 1/2", "sigmoid' at the
net input" and "gradient ascent" come from, whatever file described the computation (and the
attention and recurrent families' classic mistakes, found the same way).

A network file, a net file and a graph file give transcripts with different names (net_h,
z1[0,0], zh) but the same shape: quantities, each a formula over earlier ones. Each mistake
is found in that shape (a quantity whose value is s(1 - s) of a sigmoid s = sigmoid(u); a
backward formula that reads a parameter which is updated later; a loss with a factor 1/2 and
its derivatives; an update p + (-rate * gradient)) and made by changing those quantities
only, then recomputing everything downstream (``replay``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import sympy as sp

from .errors import SympropError
from .transcript import PRECISION, Chain, Quantity, Text, Transcript, read_keys, tr


@dataclass
class Mistake:
    code: str
    description: Text
    transcript: Transcript


def mistakes(t: Transcript) -> list[Mistake]:
    """Every mistake that applies to this transcript, each as the transcript it gives."""
    out = []
    for code, description, formulas in _candidates(t):
        if not formulas:
            continue
        try:
            out.append(Mistake(code, description, replay(t, formulas)))
        except (SympropError, ValueError, TypeError, ZeroDivisionError):
            continue  # the mistake makes a value undefined (log of a negative number): not this one
    return out


def replay(t: Transcript, formulas: dict) -> Transcript:
    """The transcript with some quantities computed by other formulas, and every quantity
    that depends on them recomputed; the rest keep their values."""
    values, changed = {}, set()
    quantities = {}
    for key, q in t.quantities.items():
        formula = formulas.get(key, q.formula)
        value = q.value
        if key in formulas or (formula is not None and read_keys(formula) & changed):
            value = t.evaluate(formula, values)
            changed.add(key)
        values[key] = value
        quantities[key] = Quantity(q.key, q.text, q.latex, formula, value, result_of=q.result_of)
    return dataclasses.replace(t, quantities=quantities, blocks=[])


def _number(value):
    return sp.N(value, PRECISION) if not isinstance(value, sp.MatrixBase) else None


def _close(a, b) -> bool:
    a, b = _number(a), _number(b)
    return a is not None and b is not None and abs(a - b) <= sp.Float("1e-40", PRECISION) * (1 + abs(b))


def _scalar(q: Quantity) -> bool:
    return not isinstance(q.value, sp.MatrixBase) and q.value.is_finite is not False


def _candidates(t: Transcript):
    qs = t.quantities
    order = list(qs)
    sym = {k: sp.Symbol(k) for k in qs}

    # sigmoid units: s = sigmoid(u), s computed from u alone, or a gate's sigmoid of a net input
    # written out (a GRU's sigmoid(ax + ah)): u the net input, a quantity or an expression
    activations = _activations(qs)
    reads = {key: read_keys(q.formula) for key, q in qs.items() if q.formula is not None}  # once: sympy walks are slow
    sigmoids = [(s, u) for s, u in activations.items()
                if _close(qs[s].value, 1 / (1 + sp.exp(-_number(_value_of(u, qs)))))]
    # the derivative of each: a quantity computed from s or u whose value is s(1 - s)
    derivative = {}
    for s, u in sigmoids:
        sv = _number(qs[s].value)
        key = _local_derivative(qs, reads, s, u, sv * (1 - sv))
        if key is not None:
            derivative[key] = (s, u)
    yield ("forgot_sigmoid_derivative",
           tr("the sigmoid's derivative left out of the chain rule (taken as 1)", "链式法则中漏掉了 sigmoid 的导数（当成了 1）"),
           {key: sp.Integer(1) for key in derivative})
    yield ("convention_sigmoid_at_net",
           tr("the sigmoid derivative y(1 - y) taken at the net input instead of the output",
              "sigmoid 的导数 y(1 - y) 用了净输入而不是输出"),
           {key: u * (1 - u) for key, (s, u) in derivative.items()})

    # updates: p_new = p + (-rate * gradient) (or + rate * gradient), p given
    updates = {}
    for key, q in qs.items():
        p = _updated(key, q, qs)
        if p is not None:
            updates[p] = key
    yield ("convention_gradient_ascent",
           tr("gradient ascent: new = old + learning rate * gradient (the update's sign flipped)",
              "梯度上升：新值 = 旧值 + 学习率 × 偏导数（更新的符号反了）"),
           {key: 2 * sym[p] - qs[key].formula for p, key in updates.items()})

    # the backward pass with the updated weights: every formula between the loss and the new
    # forward pass that reads a parameter p (not p's own update) reads p's new value instead
    loss = _loss(t)
    if loss is not None and updates:
        start = order.index(loss) + 1
        formulas = {}
        news = set(updates.values())
        for key in order[start:]:
            q = qs[key]
            if q.formula is None or isinstance(q.formula, Chain) or key in news:
                continue
            if any(k in news for k in read_keys(q.formula)):
                break  # the forward pass with the new values has begun
            read = [p for p in updates if p in read_keys(q.formula)]
            if read and not _is_gradient_of_a_parameter(key, updates):
                formulas[key] = q.formula.xreplace({sym[p]: qs[updates[p]].value for p in read})
        yield ("convention_updated_weights",
               tr("hidden-layer gradients taken with the already-updated output weights",
                  "隐藏层梯度用了已经更新过的输出层权重"), formulas)

    # a loss with 1/2 (1/2 (y - t)^2) and its derivatives, without the 1/2
    halves = {}
    for key, q in qs.items():
        if q.formula is None or isinstance(q.formula, Chain) or not _scalar(q) or key.endswith("_new"):
            continue
        terms = q.formula.args if isinstance(q.formula, sp.Add) else (q.formula,)  # 1/2 (a^2 + b^2), a^2/2 + b^2/2
        if all(_half_square(term) for term in terms):
            halves[key] = q.formula
    formulas = {}
    for loss_key, formula in halves.items():
        formulas[loss_key] = 2 * formula
        for key in order[order.index(loss_key) + 1:]:
            q = qs[key]
            if (q.formula is not None and not isinstance(q.formula, Chain) and read_keys(q.formula)
                    and read_keys(q.formula) <= {s.name for s in formula.free_symbols}
                    and any(sp.expand(q.formula - sp.diff(formula, s)) == 0 for s in formula.free_symbols)):
                formulas[key] = 2 * q.formula
    yield ("convention_loss_no_half", tr("squared error without the 1/2", "平方误差没有乘 1/2"), formulas)

    # attention's softmax backward dS = P (dP - sum_r P_r dP_r) taken elementwise: dP P (1 - P)
    yield ("softmax_jacobian_elementwise",
           tr("the softmax Jacobian taken as elementwise: dS = dP P (1 - P), leaving out that every weight of the "
              "row moves when one score moves (the sum over the row of P dP)",
              "把 softmax 的雅可比矩阵当成了逐元素的：dS = dP P (1 - P)，漏掉了一个分数变化时该行所有权重都随之变化"
              "（该行 P dP 之和）"),
           {key: g * p * (1 - p) for key, (p, g) in _softmax_rows(qs).items()})
    # scores scaled by 1/sqrt(d) (attention's Q K^T / sqrt(dk), and so dQ and dK), the scale left out
    yield ("forgot_attention_scale",
           tr("the 1/sqrt(dk) scale of the attention scores left out (in the scores and in their gradients)",
              "漏掉了注意力分数的 1/sqrt(dk) 缩放（分数及其梯度中都漏掉了）"),
           {key: unscaled for key, q in qs.items() if (unscaled := _without_root_scale(q)) is not None})
    # attention's scores with query and key swapped (K Q^T for Q K^T): S[n,t,s] is S[n,s,t]
    yield ("attention_scores_transposed",
           tr("the scores transposed: key t against query s (K Q^T instead of Q K^T)",
              "分数转置了：用了键 t 对查询 s（K Q^T 而不是 Q K^T）"), _transposed_scores(qs))

    # a recurrence: states (an RNN's or a GRU's h, an LSTM's h and c), each step's computed from
    # the one before, h_0 given; found in the transcript's dependencies, whatever the cell
    depends = _dependencies(qs, reads)
    produced, readers = _recurrence(qs, depends)
    # tanh inside the recurrence (an RNN's state, an LSTM's candidate and tanh(c), a GRU's
    # candidate): its derivative 1 - y^2 taken at another value, as a quantity of its own or
    # inside a longer formula (an LSTM's dh/dc = o (1 - tanh(c)^2)); a layer's tanh outside a
    # recurrence taken at the net input is convention_sigmoid_at_net, a rule's variant
    recurrent = _in_recurrence(depends, produced)
    tanh_derivative = _tanh_derivatives(qs, reads, activations, recurrent)
    yield ("tanh_derivative_at_preactivation",
           tr("tanh's derivative taken as 1 - a^2 with the pre-activation a instead of 1 - y^2 with the output y = tanh(a) "
              "(an LSTM's tanh(c): 1 - c^2 instead of 1 - tanh(c)^2)",
              "tanh 的导数用预激活值 a 算成了 1 - a^2，而应是用输出 y = tanh(a) 算的 1 - y^2"
              "（LSTM 的 tanh(c)：算成了 1 - c^2 而不是 1 - tanh(c)^2）"),
           {key: f.xreplace({1 - sym[y] ** 2: 1 - u ** 2}) for key, (f, y, u) in tanh_derivative.items()})
    yield ("tanh_derivative_of_state",
           tr("tanh's derivative evaluated at its output: tanh'(y) = 1 - tanh(y)^2 instead of tanh'(a) = 1 - y^2",
              "tanh 的导数在输出处求值：tanh'(y) = 1 - tanh(y)^2，而应是 tanh'(a) = 1 - y^2"),
           {key: f.xreplace({1 - sym[y] ** 2: 1 - sp.tanh(sym[y]) ** 2}) for key, (f, y, u) in tanh_derivative.items()})

    yield ("recurrent_state_off_by_one",
           tr("a step's gradient term taken with the state it produced, h_t, instead of the state it read, h_{t-1} "
              "(in its contribution to the recurrent weight's gradient, or a gate's gradient that reads the old "
              "state or cell)",
              "某一步的梯度项用了该步产生的状态 h_t，而不是它读入的状态 h_{t-1}（在它对循环权重梯度的贡献中，"
              "或在读入旧状态或旧细胞状态的门的梯度中）"),
           {key: q.formula.xreplace({sym[r]: sym[produced[r]] for r in states})
            for key, q in qs.items() if (states := _gradient_times_state(q, produced))})
    # the sum over time forgotten before the recurrent path: for a many-to-one net they give the
    # same shared weights' gradients (without the path the earlier steps' gradients are 0), and a
    # claimed weight gradient is more likely a missing sum than a missing path
    yield ("forgot_sum_over_time",
           tr("the sum over time forgotten: a shared weight's gradient taken from the last step's contribution "
              "only, though every step uses the weight",
              "漏掉了对时间的求和：共享权重的梯度只取了最后一步的贡献，而每一步都用到了这个权重"),
           _last_step_only(qs, depends) if produced else {})
    yield ("dropped_recurrent_path",
           tr("the recurrent path dropped: an earlier state's gradient taken without the terms coming back from the "
              "next step (through the recurrent weight, and an LSTM's cell or a GRU's direct path), so the earlier "
              "steps add nothing to the shared weights' gradients",
              "漏掉了循环路径：较早状态的梯度没有加上从下一步传回的项（经循环权重，以及 LSTM 的细胞状态或 GRU 的直接路径），"
              "所以较早的各步对共享权重的梯度没有贡献"),
           _without_recurrent_terms(qs, readers))
    # gated cells only: the path from the next step's state straight back (an LSTM's c_t = f c_{t-1} + ...,
    # a GRU's h_t = ... + z h_{t-1}) dropped, the path through Wh kept
    yield ("dropped_direct_state_path",
           tr("the direct path dropped: c_{t-1}'s gradient without the term f_t dL/dc_t coming straight back from "
              "the next cell (an LSTM's forget gate path), or h_{t-1}'s without z_t dL/dh_t (a GRU's), only the path "
              "through the recurrent weight kept",
              "漏掉了直接路径：c_{t-1} 的梯度没有加上从下一细胞状态直接传回的 f_t dL/dc_t（LSTM 的遗忘门路径），"
              "或 h_{t-1} 的梯度没有加上 z_t dL/dh_t（GRU），只保留了经循环权重的路径"),
           _without_recurrent_terms(qs, {state: {produced[state]} for state in readers if produced[state] in readers[state]}))


def _activations(qs) -> dict:
    """y -> u for each quantity y computed by one function of u alone: u the one quantity its
    formula reads (sigmoid(u), tanh(u), 1/(1 + exp(-u))), or the argument of a function applied
    to an expression (a GRU's sigmoid(ax + ah), tanh(ax + r ah))."""
    found = {}
    for y, q in qs.items():
        f = q.formula
        if f is None or isinstance(f, Chain) or not _scalar(q):
            continue
        if len(f.free_symbols) == 1:
            (u,) = f.free_symbols
            if u.name in qs and _scalar(qs[u.name]):
                found[y] = u
        elif isinstance(f, sp.Function) and len(f.args) == 1 and f.free_symbols and read_keys(f) <= set(qs):
            found[y] = f.args[0]
    return found


def _value_of(u, qs):
    """The value of an expression over the transcript's quantities."""
    return u.xreplace({s: qs[s.name].value for s in u.free_symbols})


def _local_derivative(qs, reads: dict, y: str, u, value) -> str | None:
    """The first quantity after y computed from y and u's quantities alone whose value is
    ``value``: the activation's local derivative, y(1 - y) or 1 - y^2 (``reads``: what each
    quantity's formula reads)."""
    order = list(qs)
    allowed = {y} | read_keys(u)
    for key in order[order.index(y) + 1:]:
        q = qs[key]
        if q.formula is None or isinstance(q.formula, Chain) or not reads[key] or not reads[key] <= allowed:
            continue
        if _scalar(q) and _close(q.value, value):
            return key
    return None


def _tanh_derivatives(qs, reads: dict, activations: dict, among: set) -> dict:
    """key -> (formula written with 1 - y^2, y, a) for tanh's local derivative of each y = tanh(a)
    in ``among``: the quantity whose value is 1 - y^2 (made 1 - y^2 to be changed), and every
    later formula with the factor 1 - y^2 inside."""
    found = {}
    for y, u in activations.items():
        if y not in among or not isinstance(qs[y].formula, sp.tanh):
            continue
        derivative = 1 - sp.Symbol(y) ** 2
        key = _local_derivative(qs, reads, y, u, 1 - _number(qs[y].value) ** 2)
        if key is not None:
            found[key] = (derivative, y, u)
        for later in list(qs)[list(qs).index(y) + 1:]:
            f = qs[later].formula
            if (later not in found and f is not None and not isinstance(f, Chain)
                    and derivative in sp.preorder_traversal(f)):
                found[later] = (f, y, u)
    return found


def _split_key(key: str) -> tuple[str, list[str]]:
    name, _, rest = key.partition("[")
    return name, rest.rstrip("]").split(",") if rest else []


def _dependencies(qs, reads: dict) -> dict:
    """key -> every quantity its value depends on, through any number of formulas."""
    depends = {}
    for key in qs:
        direct = reads.get(key, set()) & set(depends)
        depends[key] = frozenset(direct).union(*(depends[r] for r in direct))
    return depends


def _recurrence(qs, depends: dict) -> tuple[dict, dict]:
    """The states of a recurrence: an array with a given first element (h[n,0,k] = 0) whose
    element one step on (one index larger by one) depends on it. Returns h_{t-1} -> h_t, the
    state the step produced from it, and h_{t-1} -> the quantities of step t that read it
    directly (the pre-activations through Wh, an LSTM's next cell, a GRU's next state)."""
    produced = {}
    for key in qs:
        name, index = _split_key(key)
        for position, i in enumerate(index):
            if not i.isdigit():
                continue
            first = f"{name}[{','.join((*index[:position], '0', *index[position + 1:]))}]"
            after = f"{name}[{','.join((*index[:position], str(int(i) + 1), *index[position + 1:]))}]"
            if first in qs and after in qs and key in depends[after]:
                produced[key] = after
    readers = {}
    for key, q in qs.items():
        if _is_gradient_key(key) or q.formula is None:
            continue
        index = _split_key(key)[1]
        for state in read_keys(q.formula) & set(produced):
            before, after = _split_key(state)[1], _split_key(produced[state])[1]
            (step,) = (i for i, (a, b) in enumerate(zip(before, after)) if a != b)
            if len(index) == len(after) and index[step] == after[step]:  # of step t, not of the state's own
                readers.setdefault(state, set()).add(key)
    return produced, readers


def _in_recurrence(depends: dict, produced: dict) -> set:
    """The values on the way from one state to the next: every step's values inside the
    recurrence (not the layers after it, which read only the last state)."""
    states = set(produced) | set(produced.values())
    on_the_way = states.union(*(depends[s] for s in states))
    return {key for key in on_the_way if depends[key] & states}


def _is_gradient_key(key: str) -> bool:
    return key.startswith("d") and "/d" in key


def _gradient_times_state(q: Quantity, produced: dict) -> set[str]:
    """The previous states a product of a gradient and a state reads, or a sum of such
    products (a step's contribution to the recurrent weight's gradient: dL/da1[0,t,j] *
    hs1[0,t-1,k], summed over the batch's rows; an LSTM's forget gate's dL/dc_t * c_{t-1});
    empty for anything else."""
    f = q.formula
    if f is None or isinstance(f, Chain):
        return set()
    terms = sp.Add.make_args(f)
    if not all(isinstance(term, sp.Mul) and any(_is_gradient_key(k) for k in read_keys(term)) for term in terms):
        return set()
    return read_keys(f) & set(produced)


def _without_recurrent_terms(qs, readers: dict) -> dict:
    """key -> the gradient of a previous state h_{t-1} without its terms through the
    quantities of step t that read it (``readers``), for each such gradient."""
    out = {}
    for key, q in qs.items():
        if not _is_gradient_key(key) or q.formula is None or isinstance(q.formula, Chain):
            continue
        prefix, state = key.split("/d", 1)
        through = {f"{prefix}/d{u}" for u in readers.get(state, ())}
        terms = sp.Add.make_args(q.formula)
        kept = [term for term in terms if not {s.name for s in term.free_symbols} & through]
        if through and len(kept) < len(terms):
            out[key] = sp.Add(*kept)
    return out


def _last_step_only(qs, depends: dict) -> dict:
    """key -> a given parameter's gradient with only its last step's terms, for each gradient
    that sums terms of steps one after another. A term is a later step's than another when the
    other's gradients are computed from its gradients (back through time); a batch's rows or a
    convolution's positions do not feed each other's gradients, so their sums are left alone."""

    def gradients(key, seen=frozenset()):
        """The gradients dL/d... a term's quantity is, or is computed from (dWh_step)."""
        q = qs.get(key)
        if _is_gradient_key(key):
            return {key}
        if key in seen or q is None or q.formula is None or isinstance(q.formula, Chain):
            return set()
        return set().union(*(gradients(r, seen | {key}) for r in read_keys(q.formula)))

    def later(a, b):
        """Gradients a are of a later step than gradients b: some of b are computed from a."""
        return any(x in depends[y] for x in a for y in b)

    out = {}
    for key, q in qs.items():
        if not _is_gradient_key(key) or q.formula is None or isinstance(q.formula, Chain):
            continue
        parameter = qs.get(key.split("/d", 1)[1])
        if parameter is None or parameter.formula is not None:
            continue
        terms = sp.Add.make_args(q.formula)
        read = [set().union(*(gradients(s.name) for s in term.free_symbols)) for term in terms]
        last = [term for term, a in zip(terms, read) if not any(later(b, a) for b in read)]
        if 0 < len(last) < len(terms):
            out[key] = sp.Add(*last)
    return out


def _softmax_rows(qs) -> dict:
    """key -> (P, dP) of each quantity computed as P (dP - D), the softmax's backward rule over a
    row: D the row's sum of P times dP, written out or a quantity of its own."""
    rows = {}
    for key, q in qs.items():
        f = q.formula
        if f is None or isinstance(f, Chain) or not isinstance(f, sp.Mul) or len(f.args) != 2:
            continue
        for p, difference in (f.args, f.args[::-1]):
            if not (isinstance(p, sp.Symbol) and isinstance(difference, sp.Add) and len(difference.args) == 2):
                continue
            for g, minus_total in (difference.args, difference.args[::-1]):
                total = -minus_total
                if isinstance(total, sp.Symbol) and total.name in qs and not isinstance(qs[total.name].formula, Chain):
                    total = qs[total.name].formula
                terms = sp.Add.make_args(total) if total is not None else ()
                if isinstance(g, sp.Symbol) and len(terms) > 1 and any(t.free_symbols == {p, g} for t in terms):
                    rows[key] = (p, g)
    return rows


def _transposed_scores(qs) -> dict:
    """key -> the formula of the element across the diagonal, for each scaled dot product
    S[n,t,s] (t != s; a block's head h: S[n,h,t,s]) of a forward pass whose S[n,s,t] is a
    quantity too."""
    swapped = {}
    for key, q in qs.items():
        name, _, rest = key.partition("[")
        index = rest.rstrip("]").split(",")
        if "/d" in key or len(index) not in (3, 4) or index[-2] == index[-1] or _without_root_scale(q) is None:
            continue
        other = f"{name}[{','.join((*index[:-2], index[-1], index[-2]))}]"
        if other in qs and qs[other].formula is not None:
            swapped[key] = qs[other].formula
    return swapped


def _without_root_scale(q: Quantity):
    """The formula with its division by sqrt(d) (d a whole number) left out, or None."""
    f = q.formula
    if f is None or isinstance(f, Chain):
        return None
    def is_scale(e):
        return (isinstance(e, sp.Pow) and e.exp == -1 and isinstance(e.base, sp.Pow) and e.base.exp == sp.S.Half
                and e.base.base.is_Integer) or (isinstance(e, sp.Pow) and e.exp == -sp.S.Half and e.base.is_Integer)
    if not any(is_scale(e) for e in sp.preorder_traversal(f)):
        return None
    return f.replace(is_scale, lambda e: sp.S.One)


def _half_square(term) -> bool:
    """1/2 times squares: (y - t)^2/2, or 1/2 ((y1 - t1)^2 + (y2 - t2)^2)."""
    coefficient, rest = term.as_coeff_Mul()
    return coefficient == sp.Rational(1, 2) and rest.has(sp.Pow) and all(
        e.exp == 2 for e in rest.atoms(sp.Pow) if e.base.free_symbols)


def _updated(key: str, q: Quantity, qs: dict) -> str | None:
    """The parameter ``key`` is the new value of (p_new = p + step), or None."""
    if q.formula is None or isinstance(q.formula, Chain) or not isinstance(q.formula, sp.Add):
        return None
    base = key.replace("_new", "", 1) if "_new" in key else None
    if base is None or base not in qs or qs[base].formula is not None:
        return None
    p = sp.Symbol(base)
    if p not in q.formula.args:
        return None
    return base


def _is_gradient_of_a_parameter(key: str, updates: dict) -> bool:
    """dE/dw5, dL/dW2[0,0]: a parameter's own gradient (its formula may read other weights
    only through the forward values)."""
    return "/d" in key and key.split("/d", 1)[1] in updates


def _loss(t: Transcript) -> str | None:
    """The first quantity the backward pass starts from: the last computed value before the
    first derivative d.../d... is defined."""
    previous = None
    for key, q in t.quantities.items():
        if q.formula is None:
            continue
        if key.startswith("d") and "/d" in key:
            return previous
        previous = key
    return None
