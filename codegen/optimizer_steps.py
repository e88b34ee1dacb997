"""The fused training step of every update rule in ``symbolic/steps.py``, for a network module.

For each rule NAME a network module gets

- ``_apply_NAME(param, grad, <state arrays>, <hyper-parameters>[, t])``: one parameter and its
  state tensors updated in place, element by element. The body is printed from the rule's
  formulas (``UpdateRule.element_updates``: every new value written in the old ones, so each
  element's old values are read into locals first and the new ones stored after; the shared
  subexpressions are found by SymPy's CSE, as in every other kernel);
- ``train_step_NAME_into`` (on a workspace from ``make_workspace``) and
  ``train_step_NAME_kernel``: ``loss_and_grads_into``'s statements (written out, not called:
  a called kernel is optimised again by LLVM inside its caller), then the step count (rules
  that keep one), then ``_apply_NAME`` for every parameter: one compiled call a step;
- ``init_state_NAME(params)``: the state, allocated once (a zero-filled array per parameter
  and state tensor, named ``<param>_<state>``, and a 1-element float64 ``step_count``), which
  the step updates in place like the parameters;
- ``train_step_NAME(params, state, X, T, <hyper-parameters with torch.optim's defaults>)``,
  which checks its arguments (ranges from the rule) and returns the loss before the step.

``OPTIMIZERS`` maps each name to (init_state, train_step, hyper-parameter defaults).
"""
from __future__ import annotations

import itertools
import math

import sympy as sp

from symprop.symbolic.steps import RULES, STEP_COUNT_LINE, UpdateRule

from symprop.symbolic.ir import (Assignments, DtypeOf, Flat, Function, Invoke, Let, Loop, Real, Return, Size, array,
                                 arrays, element, index, local)

LOSS, X, T = local("loss"), array("X"), array("T")


def _number(value: float) -> str:
    return "math.inf" if value == math.inf else repr(float(value))


def _update_function(rule: UpdateRule) -> Function:
    states = rule.state_names
    arrays_ = ["param", "grad", *(f"state_{s}" for s in states)]
    scalars = [*rule.hyper_names, *(["t"] if rule.counts_steps else [])]
    updates, hoisted = _loop_invariants(rule.element_updates(), set(scalars), {"p", "g", *states, *scalars})
    locals_ = {"param": "p", "grad": "g", **{f"state_{s}": s for s in states}}
    statements = [Let(local(name), element(f"{array_}_flat", "i")) for array_, name in locals_.items()]
    new = {line.target: local(f"{line.target}_new") for line, _ in updates}
    statements.append(Assignments(
        tuple((new[line.target], value) for line, value in updates), {},
        {new[line.target]: f"{line.target} <- {sp.sstr(line.formula)}" for line, _ in updates}))
    stores = {"p": "param", **{s: f"state_{s}" for s in states}}
    statements += [Let(element(f"{stores[line.target]}_flat", "i"), new[line.target]) for line, _ in updates]
    rule_lines = "\n".join(f"      {line.target} <- {sp.sstr(line.formula)}" for line in rule.lines)
    param = array("param")
    return Function(f"_apply_{rule.name}", arrays(*arrays_, *scalars), (
        DtypeOf(param), *(Let(local(f"{a}_flat"), Flat(array(a))) for a in arrays_),
        *(Let(name, value) for name, value in hoisted.items()),
        Loop(index("i"), Size(sp.Symbol("param_flat")), tuple(statements))),
        f"""{rule.summary}: one parameter and its state in place, element by element, the rule's
    lines in order (symbolic/steps.py; each reads the new values of the lines above it):
{rule_lines}
    Arguments are in the parameter's dtype; the arrays are flat views (one compiled signature
    serves parameters of every rank). c0, c1 ...: what every element shares, computed once.""")


def _loop_invariants(updates, scalars: set[str], taken: set[str]):
    """The updates with what every element shares computed once, before the loop: each
    subexpression of the scalars alone (1 - beta1**t), and in each product the scalars'
    factors together (-lr/(1 - beta1**t) times m/(...)), in locals c0, c1 ... (none of the
    names in ``taken``). Returns (updates, {local: value}). A division by a shared value
    becomes a product with its reciprocal: Adam's update had two divisions an element and has
    one (78,400 float32 weights: 31 -> 22 us, measured; its last bits may differ by rounding,
    where the other rules' stay the same)."""
    hoisted = {}

    def shared(e):
        return e.free_symbols and all(s.name in scalars for s in e.free_symbols)

    def name_for(e):  # the local c<k> that holds e (a number or a scalar stays as it is)
        if e.is_Atom:
            return e
        for name, value in hoisted.items():
            if value == e:
                return name
        name = next(local(f"c{k}") for k in itertools.count(len(hoisted)) if f"c{k}" not in taken)
        hoisted[name] = e
        return name

    def visit(e):
        if e.is_Atom:
            return e
        if shared(e):
            return name_for(e)
        if isinstance(e, sp.Mul):
            fixed = [a for a in e.args if a.is_number or shared(a)]
            if fixed and not (len(fixed) == 1 and fixed[0].is_Atom):
                return sp.Mul(name_for(sp.Mul(*fixed)), *(visit(a) for a in e.args if a not in fixed))
        return e.func(*(visit(a) for a in e.args))

    return [(line, visit(value)) for line, value in updates], hoisted


def _state_names(rule: UpdateRule, param_names) -> list[str]:
    names = [f"{p}_{s}" for p in param_names for s in rule.state_names]
    return names + (["step_count"] if rule.counts_steps else [])


def _step_kernels(rule: UpdateRule, kernels) -> list[Function]:
    """train_step_NAME_into (on a workspace) and train_step_NAME_kernel (allocating its own):
    the gradient statements, then the step count, then _apply_NAME for every parameter."""
    name, P = rule.name, kernels.params
    state = arrays(*_state_names(rule, [p.name for p in P]))
    hyper = arrays(*rule.hyper_names)
    _check_no_shadowing(rule, kernels.allocating)
    count, t = [], local("t")
    if rule.counts_steps:
        line, counter = STEP_COUNT_LINE, element("step_count", 0)
        count = [Assignments(((counter, line.formula),), {"t": counter},
                             {counter: f"t <- {sp.sstr(line.formula)}: {line.note}"}),
                 Let(t, Real(counter))]
    calls = [Invoke(f"_apply_{name}", (Flat(p), Flat(g), *(Flat(array(f"{p}_{s}")) for s in rule.state_names),
                                       *map(Real, hyper), *([t] if rule.counts_steps else [])))
             for p, g in zip(P, kernels.grads)]
    update = [*count, *calls, *kernels.after_update, Return((LOSS,))]
    extras = kernels.state + kernels.masks
    return [Function(f"train_step_{name}_into", (*P, *state, X, T, *hyper, *extras, *kernels.buffers),
                     (*kernels.gradients, *update),
                     f"One {name} step in place, on a workspace from make_workspace(X): the gradients, then\n"
                     "    every parameter and its state."),
            Function(f"train_step_{name}_kernel", (*P, *state, X, T, *hyper, *extras), (*kernels.allocating, *update),
                     f"train_step_{name}_into's statements on a workspace of its own (written out, not called).")]


def _check_no_shadowing(rule: UpdateRule, statements):
    """The step's statements run before _apply_NAME reads the hyper-parameters: a statement that
    assigned one of their names (batch norm's eps once did) would silently replace the
    caller's value, so that is an error in the generator, not a wrong number at run time."""
    from .layer_kernels import reads_and_writes

    clashes = set(reads_and_writes(statements)[1]) & set(rule.hyper_names)
    if clashes:
        raise AssertionError(f"the {rule.name} step's statements assign {sorted(clashes)}, "
                             "the names of its hyper-parameters: name those locals after their layer")


def rule_text(rule: UpdateRule, kernels, function) -> str:
    """Everything a network module has for one rule (see the module docstring): ``kernels``,
    the network's ``NetworkKernels``; ``function`` prints a function with the module's printer.
    A network with batch norm or dropout passes its running averages and masks to the kernels
    and updates the running averages after the step."""
    modes = kernels.net.has_modes
    name = rule.name
    param_names = [p.name for p in kernels.params]
    params = ", ".join(param_names)
    state = _state_names(rule, param_names)
    defaults = ", ".join(f"{h.name}={_number(h.default)}" for h in rule.hyper)
    checks = ", ".join(f'_hyper("train_step_{name}", "{h.name}", {h.name}, {_number(h.low)}, {_number(h.high)}, '
                       f'{h.closed!r})' for h in rule.hyper)
    zeros = []
    for p in param_names:
        for s, initial in rule.state:
            zeros.append(f"np.zeros_like({p})" if initial == 0 else f"np.full_like({p}, {_number(initial)})")
    if rule.counts_steps:
        zeros.append("np.zeros(1, np.float64)")
    described = ", ".join(f"{s} ({'0' if i == 0 else i})" for s, i in rule.state) or "none"
    into, kernel = map(function, _step_kernels(rule, kernels))
    return f'''
{function(_update_function(rule))}


{into}


{kernel}


STATE_NAMES_{name.upper()} = {tuple(state)!r}


def init_state_{name}({params}):
    """{name}'s state for these parameters, allocated once and updated in place by
    train_step_{name}: per parameter {described}{'; the step count t (0)' if rule.counts_steps else ''}."""
    _check_params("init_state_{name}", ({params},))
    return ({"".join(z + ", " for z in zeros)})


def train_step_{name}({params}, state, X, T, {defaults}{", running=None, masks=None" if modes else ""}):
    """One step of {rule.torch} in place (parameters and state, from init_state_{name});
    returns the loss before it.{_MODES_DOC if modes else ""}"""
    _check("train_step_{name}", ({params},), X, T)
    _updated_in_place("train_step_{name}", ({params},), X, T)
    state = _check_state("train_step_{name}", state, STATE_NAMES_{name.upper()}, ({params},), X, T)
    hyper = ({checks},)
    return train_step_{name}_kernel({params}, *state, np.ascontiguousarray(X), np.ascontiguousarray(T), *hyper{
        ', *_extras("train_step_' + name + '", X, running, masks, True)' if modes else ""})
'''


_MODES_DOC = """ Training mode: running holds the running averages of batch norm
    (from init_state(), updated in place), masks one 0/1 mask per dropout layer (make_masks)."""


SHARED_TEXT = '''

# ---- optimisers: the update rules of symbolic/steps.py, each fused with the step ----


def _check_params(function, params):
    checked = _arrays(function, **dict(zip(PARAM_NAMES, params)))
    for name, array, shape in zip(PARAM_NAMES, checked, PARAM_SHAPES):
        _shape(function, name, array, shape)


def _hyper(function, name, value, low, high, closed):
    """A hyper-parameter as a float inside its interval (the rule's, from symbolic/steps.py)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{function}: {name} must be a number, got {type(value).__name__} {value!r:.40}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    above = number >= low if closed[0] else number > low
    below = number <= high if closed[1] else number < high
    if not (math.isfinite(number) and above and below):
        interval = f"{'[' if closed[0] else '('}{low:g}, {high:g}{']' if closed[1] else ')'}"
        raise ValueError(f"{function}: {name} must be in {interval}, got {value!r:.40}")
    return number


def _check_state(function, state, names, params, X, T):
    """The state tuple of init_state_<rule>: one array per name, each of its parameter's
    shape and dtype (the step count: 1 float64), writeable and sharing memory with nothing."""
    if not isinstance(state, tuple) or len(state) != len(names):
        raise ValueError(f"{function}: state must be the tuple of {len(names)} arrays from init_state "
                         f"({', '.join(names) or 'empty'}), got {type(state).__name__}")
    shapes = dict(zip(PARAM_NAMES, params))
    for name, array in zip(names, state):
        owner = shapes.get(name.rsplit("_", 1)[0])
        shape, dtype = (owner.shape, owner.dtype) if name != "step_count" else ((1,), np.float64)
        if (not isinstance(array, np.ndarray) or array.shape != shape or array.dtype != dtype
                or not array.flags.c_contiguous or not array.flags.writeable):
            raise ValueError(f"{function}: state {name} must be a writeable C-contiguous "
                             f"{np.dtype(dtype).name} array of shape {shape} (from init_state)")
    _separate(function, {**dict(zip(PARAM_NAMES, params)), **dict(zip(names, state))}, dict(X=X, T=T))
    return state
'''


def optimizers_text(kernels, function) -> str:
    """The optimiser part of a network module: shared checks, every rule, and OPTIMIZERS
    (``kernels``: the network's ``NetworkKernels``; ``function`` prints a function)."""
    table = "\n".join(
        f"    {rule.name!r}: (init_state_{rule.name}, train_step_{rule.name}, "
        f"{ {h.name: h.default for h in rule.hyper}!r}),"
        for rule in RULES.values())
    return (SHARED_TEXT + "".join("\n" + rule_text(rule, kernels, function) for rule in RULES.values())
            + f"\n\n# name -> (init_state, train_step, hyper-parameter defaults)\nOPTIMIZERS = {{\n{table}\n}}\n")
