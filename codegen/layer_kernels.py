"""Per-layer kernels: ``<layer>_forward`` and ``<layer>_backward`` for every registered layer.

Each kernel (``<name>_kernel``) is a function of typed statements (``ir.Function``) that the
backend prints and compiles, plus a checked wrapper (``<name>``, plain Python) that validates
shapes and dtypes, allocates outputs unless the caller passes them, and never modifies its
inputs. The kernels are the lowering of a one-node graph: softmax, the losses and any family
that brings its own lowering on 2-D arrays (``_from_lowering``); an element-by-element op
(activations, add and mul, dropout: ``Op.element_by_element``) on arrays of any shape, with the
fused ``<layer>_forward_backward`` one loop of its forward and backward statements, and affine
at size symbols its wrappers read off X and W (``_one_node_kernels``). The image ops (4-D
arrays, window, stride, padding) keep an emitter here (``EMITTERS``).
"""
from __future__ import annotations

from dataclasses import replace

import sympy as sp

from symprop.symbolic.errors import SympropError
from symprop.symbolic.graph import Graph, Node, parse_net
from symprop.symbolic.ir import (Accumulate, Assignments, Axis, Call, Copy, DtypeOf, Function, Let, Loop, MatrixInto,
                                 Real, Return, ShapeOf, array, arrays, local, parts)
from symprop.symbolic.layers import REGISTRY, Conv2d, Derivation, Flatten, N, Pool
from symprop.symbolic.lower import Lowering
from symprop.symbolic.ops.builders import FEATURES

from .backend import NUMBA


def python_name(layer_name: str) -> str:
    return layer_name.replace("-", "_")


class ModuleText:
    """Collects functions and the helpers they use; kernels (``ir.Function``) are printed by
    the backend's statement printer, one for the module."""

    def __init__(self, backend=NUMBA):
        self.functions: list[str] = []
        self.helpers: set[str] = set()
        self.backend, self.printer = backend, backend.printer()

    def kernel(self, name: str, params: str, *body) -> str:
        """A compiled kernel's text: its parameters as one comma-separated string of names."""
        node = Function(name, arrays(*params.replace(" ", "").split(",")), body)
        text = self.backend.function(node, self.printer)
        self.helpers |= self.printer.helpers_used
        return text.rstrip("\n")

    def add(self, text: str, helpers=()):
        self.functions.append(text.strip("\n") + "\n")
        self.helpers |= set(helpers)


def _nest(loop):
    """The innermost loop of a loop nest (for n: for j: ...)."""
    while len(loop.body) == 1 and isinstance(loop.body[0], Loop):
        loop = loop.body[0]
    return loop


def _with_body(loop, body):
    """The loop nest with its innermost body replaced."""
    if len(loop.body) == 1 and isinstance(loop.body[0], Loop):
        return replace(loop, body=(_with_body(loop.body[0], body),))
    return replace(loop, body=tuple(body))


def _read_once(statements) -> list:
    """Each element an element loop reads, loaded once into a local (X_nj = X[n, j]) before its
    stores: outputs may alias inputs as far as numba knows, so an element read again after a
    store is reloaded, and LLVM could no longer share the work (one exp) of two helpers applied
    to it."""
    out = []
    for s in statements:
        if isinstance(s, Loop):
            s = _with_body(s, _read_once(_nest(s).body))
        elif isinstance(s, Assignments):
            used = {symbol.name for _, value in s.pairs for symbol in value.free_symbols}
            reads = {key: value for key, value in s.names.items() if key in used and isinstance(value, sp.Indexed)}
            loaded = {key: local(f"{parts(value)[0]}_nj") for key, value in reads.items()}
            out += [Let(loaded[key], value) for key, value in reads.items()]
            s = replace(s, names={**s.names, **loaded})
        out.append(s)
    return out


def _fused(forward, backward) -> list:
    """One element loop for a forward loop and the backward loop over the same elements: the
    backward rules read the forward values as their formulas, so the two share their work
    (one exp for y = sigmoid(x) and dx = dout y (1 - y))."""
    (forward_loop,), (backward_loop,) = ([s for s in part if isinstance(s, Loop)] for part in (forward, backward))
    (values,), (rules,) = _nest(forward_loop).body, _nest(backward_loop).body
    written = dict(values.pairs)
    formulas = {symbol: written[rules.names[symbol.name]] for _, rule in rules.pairs for symbol in rule.free_symbols
                if rules.names.get(symbol.name) in written}
    both = Assignments(values.pairs + tuple((target, rule.subs(formulas)) for target, rule in rules.pairs),
                       {**values.names, **rules.names}, {**values.comments, **rules.comments})
    return [_with_body(forward_loop, (both,))]


def _walk(statements):
    """The statements and, in order, those inside their loops."""
    for s in statements:
        yield s
        yield from _walk(s.body) if isinstance(s, Loop) else ()


def _op_names(low) -> dict:
    """array -> the name the op's derivation gives it (X -> x, h0 -> y, dz1 -> dY, W1 -> W),
    read off the renamings of its statements; a gradient d<array> without one is d<name>."""
    public = {parts(value)[0]: key for s in _walk(low.forward + low.backward) for key, value in
              getattr(s, "names", {}).items() if isinstance(value, (sp.Symbol, sp.Indexed))}
    return {**{f"d{array}": f"d{name}" for array, name in public.items()}, **public}


def _one_node_kernels(layer, d: Derivation, module: ModuleText):
    """The kernels of an element-by-element op (activations, add and mul, dropout) or of one
    whose spec arguments are sizes (affine(I,J)), printed from the lowering of a one-node graph
    that holds those sizes as symbols (``Op.size_args``) and a number the per-layer API takes at
    run time (dropout's p, ``Op.run_time_args``) as an argument of the kernels.
    ``<layer>_forward(inputs..., out=None)`` returns the value; ``<layer>_backward(upstream,
    saved...)`` the inputs' gradients, named as the op's derivation names them. An
    element-by-element op's wrappers take arrays of any shape and give the kernels one-row
    views (1, size), and the caller may pass every output; its
    ``<layer>_forward_backward(inputs..., upstream)`` is one loop of the forward and backward
    statements. Kernels with run-time numbers allocate their outputs and have no fused form."""
    base, scalars, elements = python_name(layer.name), dict(layer.run_time_args), layer.element_by_element
    values_read = [name for name in layer.inputs if name not in layer.input_arrays(1)]
    args = (*layer.size_args, *map(local, scalars))
    node = Node(layer, args, layer.name, 1, 1, inputs=tuple(values_read) if elements and len(values_read) > 1 else None)
    low = Lowering(Graph((node,), features=None if layer.input_width(args) else FEATURES), input_gradient=True)
    public, value = _op_names(low), low.values[-1]
    array_of = {name: array for array, name in public.items()}
    inputs, gradients = [array_of[name] for name in layer.inputs], [array_of[name] for name in d.backward]
    kernels = [("forward", low.forward, inputs, [value]),
               ("backward", low.backward, [f"d{value}", *(array_of[name] for name in d.saved)], gradients)]
    if elements and not scalars:
        kernels.append(("forward_backward", _fused(low.forward, low.backward), [*inputs, f"d{value}"],
                        [value, *gradients]))
    for kind, statements, kernel_args, outputs in kernels:
        function = f"{base}_{kind}"
        loops = [DtypeOf(array(kernel_args[0])), ShapeOf((N, FEATURES), array(kernel_args[0]))] if elements else []
        body = (*loops, *(Let(local(name), Real(local(name))) for name in scalars), *_read_once(statements))
        missing = set(reads_and_writes(body)[0]) - {*kernel_args, *scalars, *map(str, (N, *layer.size_args))}
        if missing:
            raise SympropError(f"layer {layer.name!r}: its {kind} statements read {sorted(missing)}, "
                               "which its per-layer kernel does not take")
        kernel = Function(f"{function}_kernel", arrays(*kernel_args, *scalars, *outputs), body)
        names = [public[name] for name in kernel_args]
        results = ["out" if name == value else public[name] for name in outputs]  # the value is out
        if elements:  # arrays of one shape, the first one's (the fused kernel's: dout's)
            like = names[-1] if kind == "forward_backward" else names[0]
            shapes, shape_of, checks, checked = None, lambda name: f"{like}.shape", [], {like}  # noqa: E731
            caller = results if not scalars and kind != "forward_backward" else []
        else:
            shapes = {public[name]: shape for name, shape in low.array_shapes().items() if name in public}
            shapes["out"] = low.array_shapes()[value]
            shape_of, checks, checked = _sizes_read(function, names, shapes, [public[name] for name in inputs])
            like, caller = checked[0], results[:1] if kind == "forward" else []
        module.add(module.backend.function(kernel, module.printer) + "\n\n" + _wrapper(
            function, _doc(layer, d, kind, names, results, shapes), names, scalars, results, caller, shape_of, like,
            checks, checked, ".reshape(1, -1)" if elements else ""))
    module.helpers |= module.printer.helpers_used


def _doc(layer, d: Derivation, kind: str, args, outputs, shapes) -> str:
    if kind == "forward":
        (value, rule), = d.forward.items()
        where = ", element by element" if shapes is None else ": " + ", ".join(f"{a} is {shapes[a]}" for a in args)
        return f"{value} = {sp.sstr(rule)}{where} ({layer.summary})."
    if kind == "backward":
        return "; ".join(f"{name} = {sp.sstr(rule)}" for name, rule in d.backward.items()) + ". Never writes its inputs."
    return ("Forward and backward in one pass over memory, when the upstream gradient is known with the\n"
            f"    inputs (an activation applied to a fixed upstream gradient); returns ({', '.join(outputs)}).")


def _sizes_read(function, args, shapes, inputs):
    """Where a kernel's sizes come from: each from the first of the op's inputs that has it (X
    gives N and I, then W gives J), one check that those arrays chain ((N, I) x (I, J)).
    Returns (each array's shape as the wrapper writes it, the check's lines, the arrays it checks)."""
    known, ranks, chains, chained = {}, [], [], []
    for name in (name for name in inputs if name in args):
        if all(size in known or isinstance(size, int) for size in shapes[name]):
            continue
        chained.append(name)
        ranks.append(f"{name}.ndim != {len(shapes[name])}")
        for axis, size in enumerate(shapes[name]):
            if size in known:
                chains.append(f"{known[size]} != {name}.shape[{axis}]")
            known.setdefault(size, f"{name}.shape[{axis}]")
    shape_of = lambda name: "(" + ", ".join(known.get(size, str(size)) for size in shapes[name]) + (  # noqa: E731
        "," if len(shapes[name]) == 1 else "") + ")"
    message = " and ".join(f"{name} {{{name}.shape}}" for name in chained)
    return shape_of, [f'    if {" or ".join(ranks + chains)}:', f'        raise ValueError(f"{function}: {message} '
                      f'do not chain as {" x ".join(str(shapes[name]) for name in chained)}")'], chained


def _wrapper(function, doc, args, scalars, outputs, caller, shape_of, like, checks, checked, view,
             loss=False, scratch=()) -> str:
    """The checked wrapper of a kernel: arrays of one float dtype (``like``'s), the sizes'
    ``checks``, every other array's shape (``shape_of``) checked; outputs allocated, those in
    ``caller`` the caller's if given (``out=None``); the kernel called on ``view``s of them, its
    outputs returned (after the loss it returns, ``loss``). ``scratch`` arrays are allocated and
    passed after the outputs, never returned (an intermediate gradient the kernel keeps)."""
    given = ", ".join(f"{name}={name}" for name in args)
    signature = [*args, *(f"{name}={value!r}" for name, value in scalars.items()), *(f"{name}=None" for name in caller)]
    lines = [f"def {function}({', '.join(signature)}):", f'    """{doc}"""']
    if caller:
        lines += [f"    if {' or '.join(f'{o} is not None' for o in caller)}:  # the caller's array must not share "
                  "memory with an input",
                  f'        _separate("{function}", dict({", ".join(f"{o}={o}" for o in caller)}), dict({given}))']
    lines += [f'    {"".join(f"{name}, " for name in args)}= _arrays("{function}", {given})', *checks]
    lines += [f'    _shape("{function}", "{name}", {name}, {shape_of(name)})' for name in args if name not in checked]
    lines += [f'    {name} = _output("{function}", "{name}", {name}, {shape_of(name)}, {like}.dtype)' if name in caller
              else f"    {name} = np.empty({shape_of(name)}, {like}.dtype)" for name in [*outputs, *scratch]]
    call = [*(f"{name}{view}" for name in args), *scalars, *(f"{name}{view}" for name in [*outputs, *scratch])]
    lines += [f"    {'loss = ' if loss else ''}{function}_kernel({', '.join(call)})",
              f"    return {', '.join(['loss', *outputs] if loss else outputs)}"]
    return "\n".join(lines) + "\n"


_IMAGE_CHECK = '''
def _images(function, X, ndim=4):
    if X.ndim != ndim or X.shape[0] == 0:
        raise ValueError(f"{function}: expected a batch of NCHW images (N, C, H, W), got shape {X.shape}")
    return X


def _window(function, X, k, stride):
    k = int(k)
    stride = k if stride is None else int(stride)
    if k < 1 or stride < 1 or k > min(X.shape[2:]):
        raise ValueError(f"{function}: a {k}x{k} window with stride {stride} does not fit images {X.shape[2:]}")
    return k, stride
'''


def _conv2d(layer, d: Derivation, module: ModuleText):
    """conv2d on 4-D NCHW arrays: the network's im2col helpers on (N, C*H*W) views."""
    base = python_name(layer.name)
    module.add(_IMAGE_CHECK)
    forward_args = "X, Wt, b, C, H, W, stride, pad, cols, Y"
    forward = module.kernel(f"{base}_forward_kernel", forward_args,
                            Call("_conv2d_forward", arrays(*forward_args.split(", "))))
    X, Wt, C, H, W, stride, pad = arrays("X", "Wt", "C", "H", "W", "stride", "pad")
    backward = module.kernel(
        f"{base}_backward_kernel", "dY, X, Wt, C, H, W, stride, pad, cols, dcols, product, dX, dW, db",
        Call("_im2col", (X, C, H, W, Axis(Wt, 2), stride, pad, array("cols"))),
        Call("_conv2d_param_grads", arrays("dY", "cols", "dW", "db", "product")),
        Call("_conv2d_input_grad", (array("dY"), Wt, C, H, W, stride, pad, array("dcols"), array("dX"))))
    module.add(f'''
{forward}


def {base}_forward(X, W, b, stride=1, pad=0):
    """Y[n,o,i,j] = b[o] + sum_c,p,q W[o,c,p,q] Xp[n,c,s*i+p,s*j+q] (Xp: X zero-padded by pad);
    X is (N, C, H, W), W is (O, C, k, k), b is (O,); returns Y as (N, O, Ho, Wo)."""
    X, W, b = _arrays("{base}_forward", X=X, W=W, b=b)
    N, C, H, Wd = _images("{base}_forward", X).shape
    if W.ndim != 4 or W.shape[1] != C or W.shape[2] != W.shape[3] or W.shape[2] > min(H, Wd) + 2 * pad:
        raise ValueError(f"{base}_forward: W {{W.shape}} is not (O, {{C}}, k, k) with k fitting {{X.shape[2:]}}")
    _shape("{base}_forward", "b", b, (W.shape[0],))
    O, k = W.shape[0], W.shape[2]
    Ho, Wo = (H + 2 * pad - k) // stride + 1, (Wd + 2 * pad - k) // stride + 1
    Y = np.empty((N, O, Ho, Wo), X.dtype)
    cols = np.empty((N, C * k * k, Ho * Wo), X.dtype)
    {base}_forward_kernel(X.reshape(N, -1), W, b, C, H, Wd, stride, pad, cols, Y.reshape(N, -1))
    return Y


{backward}


def {base}_backward(dY, X, W, stride=1, pad=0):
    """(dX, dW, db): dXp[a,e,u,v] = {sp.sstr(d.backward["dX"])} (a full convolution with the flipped
    kernel), dW[a,e,u,v] = {sp.sstr(d.backward["dW"])}, db[a] = {sp.sstr(d.backward["db"])}."""
    dY, X, W = _arrays("{base}_backward", dY=dY, X=X, W=W)
    N, C, H, Wd = _images("{base}_backward", X).shape
    O, k = W.shape[0], W.shape[2]
    Ho, Wo = (H + 2 * pad - k) // stride + 1, (Wd + 2 * pad - k) // stride + 1
    _shape("{base}_backward", "dY", dY, (N, O, Ho, Wo))
    cols = np.empty((N, C * k * k, Ho * Wo), X.dtype)
    dcols = np.empty((C * k * k, Ho * Wo), X.dtype)
    product = np.empty((O, C * k * k), X.dtype)
    dX, dW, db = np.empty_like(X), np.empty_like(W), np.empty(O, X.dtype)
    {base}_backward_kernel(dY.reshape(N, -1), X.reshape(N, -1), W, C, H, Wd, stride, pad, cols, dcols, product,
                           dX.reshape(N, -1), dW, db)
    return dX, dW, db
''')


def _pool(layer, d: Derivation, module: ModuleText):
    base, mode = python_name(layer.name), layer.mode
    reads = "dY, X" if layer.selects_one else "dY"
    module.add(_IMAGE_CHECK)
    window = arrays("C", "H", "W", "k", "stride")
    forward = module.kernel(f"{base}_forward_kernel", "X, C, H, W, k, stride, Y",
                            Call(f"_{mode}pool_forward", (array("X"), *window, array("Y"))))
    backward = module.kernel(f"{base}_backward_kernel", "dY, X, C, H, W, k, stride, dX",
                             Call(f"_{mode}pool_backward", (*arrays(*reads.split(", ")), *window, array("dX"))))
    module.add(f'''
{forward}


def {base}_forward(X, k, stride=None):
    """{layer.summary}; X is (N, C, H, W); returns (N, C, Ho, Wo)."""
    X, = _arrays("{base}_forward", X=X)
    N, C, H, W = _images("{base}_forward", X).shape
    k, stride = _window("{base}_forward", X, k, stride)
    Y = np.empty((N, C, (H - k) // stride + 1, (W - k) // stride + 1), X.dtype)
    {base}_forward_kernel(X.reshape(N, -1), C, H, W, k, stride, Y.reshape(N, -1))
    return Y


{backward}


def {base}_backward(dY, X, k, stride=None):
    """dX[a,e,u,v] = {sp.sstr(d.backward["dX"])}{" (S: 1 at the window's first maximum in row-major order)" if layer.selects_one else ""}."""
    dY, X = _arrays("{base}_backward", dY=dY, X=X)
    N, C, H, W = _images("{base}_backward", X).shape
    k, stride = _window("{base}_backward", X, k, stride)
    _shape("{base}_backward", "dY", dY, (N, C, (H - k) // stride + 1, (W - k) // stride + 1))
    dX = np.empty_like(X)
    {base}_backward_kernel(dY.reshape(N, -1), X.reshape(N, -1), C, H, W, k, stride, dX.reshape(N, -1))
    return dX
''')


def _flatten(layer, d: Derivation, module: ModuleText):
    base = python_name(layer.name)
    module.add(_IMAGE_CHECK)
    forward = module.kernel(f"{base}_forward_kernel", "X, Y", Copy(array("Y"), array("X")))
    backward = module.kernel(f"{base}_backward_kernel", "dY, dX", Copy(array("dX"), array("dY")))
    module.add(f'''
{forward}


def {base}_forward(X):
    """{layer.summary}: (N, C, H, W) -> a new (N, C*H*W) array."""
    X, = _arrays("{base}_forward", X=X)
    N = _images("{base}_forward", X).shape[0]
    Y = np.empty((N, X.size // N), X.dtype)
    {base}_forward_kernel(X.reshape(N, -1), Y)
    return Y


{backward}


def {base}_backward(dY, X):
    """dX[a,e,u,v] = {sp.sstr(d.backward["dX"])}: dY read back in X's shape (a new array)."""
    dY, X = _arrays("{base}_backward", dY=dY, X=X)
    N = _images("{base}_backward", X).shape[0]
    _shape("{base}_backward", "dY", dY, (N, X.size // N))
    dX = np.empty_like(X)
    {base}_backward_kernel(dY, dX.reshape(N, -1))
    return dX
''')


# op type -> the kernels it gets in generated/layers.py (dispatch on the type, through base classes)
EMITTERS = {
    Conv2d: _conv2d,
    Pool: _pool,
    Flatten: _flatten,
}


def _names_read(expr, names) -> list[str]:
    """The arrays and locals an expression reads, through a statement's renaming table."""
    found = []
    for atom in sp.preorder_traversal(expr):
        if isinstance(atom, (sp.Indexed, sp.MatrixSymbol)):
            name = atom.base.label.name if isinstance(atom, sp.Indexed) else atom.name
        elif isinstance(atom, sp.Symbol) and not isinstance(atom, sp.Dummy):
            name = atom.name
        else:
            continue
        value = names.get(name, name)
        if isinstance(value, sp.Indexed):
            found.append(value.base.label.name)
        elif isinstance(value, (sp.Symbol, str)):
            found.append(str(value))
    return found


def reads_and_writes(statements) -> tuple[list[str], list[str]]:
    """(names read before written, names written) by statements, in order of first use: what a
    kernel printed from them takes as arguments and gives back (a walk over the typed IR)."""
    read, written = {}, {}

    def reads(names):
        for name in names:
            if name not in written:
                read.setdefault(name, None)

    def walk(statements):
        for s in statements:
            if isinstance(s, Loop):
                written.setdefault(s.index.name, None)
                walk(s.body)
            elif isinstance(s, Assignments):
                for target, value in s.pairs:
                    reads(_names_read(value, s.names))
                    reads([parts(target)[0]] if target in s.accumulate else [])
                    written.setdefault(parts(target)[0], None)
            elif isinstance(s, (Let, Accumulate)):
                value = s.value if isinstance(s, Let) else s.expr
                reads([] if isinstance(value, int) else _names_read(value, getattr(s, "names", {})))
                reads([parts(s.target)[0]] if isinstance(s, Accumulate) or s.augmented else [])
                written.setdefault(parts(s.target)[0], None)
            elif isinstance(s, MatrixInto):
                reads(_names_read(s.rule, s.names))
                written.setdefault(str(s.out), None)
            elif isinstance(s, Call):
                reads(str(a) for a in s.args if isinstance(a, sp.Symbol))
    walk(statements)
    return list(read), list(written)


def _size_lets(statements) -> list:
    """The top-level sizes a layer's statements set (K = F), which the backward statements of a
    loss read from its forward ones."""
    return [s for s in statements if isinstance(s, Let) and isinstance(s.target, sp.Symbol)
            and isinstance(s.value, (int, sp.Symbol))]


def _from_lowering(layer, d: Derivation, module: ModuleText):
    """A layer's kernels printed from the lowering of a one-node graph at a width F read from
    the input: ``<layer>_forward(x[, t], params..., out=None)`` runs its forward (a loss: its
    loss) statements and returns the value (a loss: the loss, and what it saves);
    ``<layer>_backward(...)`` takes what its backward statements read (the upstream gradient,
    the saved values, the targets, the parameters; a loss has no upstream gradient) and
    returns the gradients they write. Names are the op's own (its derivation's input and
    output, its parameter roles), so the layer's API reads like its formula."""
    graph = parse_net(layer.name, loss_optional=True, input_width=FEATURES)
    low = Lowering(graph, input_gradient=True)
    # state (batch norm's running averages) is the network's: the training-mode kernels never read it
    if low.masks or low.views:
        raise SympropError(f"layer {layer.name!r}: an op with masks needs per-layer kernels of its own")
    base = python_name(layer.name)
    # a number the spec fixes (batch norm's eps = 1e-05) is an argument of the kernels, the
    # spec's number its default: its statement reads the argument instead
    fixed = [s for s in low.forward if isinstance(s, Let) and isinstance(s.target, sp.Symbol)
             and isinstance(s.value, sp.Float)]
    constants = {s.target.name: float(s.value) for s in fixed}
    forward_statements = [Let(s.target, Real(s.target)) if any(s is f for f in fixed) else s
                          for s in low.forward + low.loss]
    forward_written = reads_and_writes(forward_statements)[1]
    saved = [name for name, _ in low.buffers if name in forward_written]  # the value, what a loss saves
    name_of = _public_names(layer, d, graph.nodes[0], low, saved)
    shapes = dict(low.array_shapes())
    X = array("X")
    start = [DtypeOf(X), ShapeOf((N, FEATURES), X)]
    inputs = ["X", *(["T"] if layer.is_loss else []), *(name for name, _ in low.params)]
    forward_kernel = Function(f"{base}_forward_kernel", arrays(*inputs, *constants, *saved), (
        *start, *forward_statements, *([Return((local("loss"),))] if layer.is_loss else [])))
    backward_read, backward_written = reads_and_writes(low.backward)
    known = set(shapes) | {"T"}
    args = [name for name in backward_read if name in known]
    order = ({f"d{saved[0]}": 0} if saved else {}) | {"X": 1, **{name: 2 for name in saved}, "T": 3}
    args.sort(key=lambda name: order.get(name, 4))
    gradients = ["dX", *(f"d{name}" for name, _ in low.params)]
    outputs = [name for name in gradients if name in backward_written]
    # arrays the backward statements write for themselves (a gated unit's dL/da, read by its dx
    # and dW): the wrapper allocates them, the kernel fills them, nobody gets them back
    scratch = [name for name, _ in low.buffers if name in backward_written and name not in outputs]
    first = args[0] if args else "X"
    sizes = [DtypeOf(array(first)), ShapeOf((N, FEATURES), array(first))]
    backward_constants = {name: value for name, value in constants.items() if name in backward_read}
    backward_kernel = Function(f"{base}_backward_kernel", arrays(*args, *backward_constants, *outputs, *scratch), (
        *sizes, *(Let(local(c), Real(local(c))) for c in backward_constants),
        *[s for s in _size_lets(forward_statements) if s not in low.backward], *low.backward))
    kernels = [module.backend.function(node, module.printer) for node in (forward_kernel, backward_kernel)]
    module.add(kernels[0] + "\n\n" + _lowered_wrapper(layer, base, "forward", [name_of(n) for n in inputs],
                                                     ["out", *map(name_of, saved[1:])][:len(saved)], shapes,
                                                     inputs, saved, d, constants))
    module.add(kernels[1] + "\n\n" + _lowered_wrapper(layer, base, "backward", [name_of(n) for n in args],
                                                     [name_of(n) for n in outputs], shapes, args, outputs, d,
                                                     backward_constants, scratch))
    module.helpers |= module.printer.helpers_used


def _public_names(layer, d: Derivation, use, low, saved):
    """The op's own name of each of its lowering's arrays, for its wrappers' parameters: its
    derivation's input (x, z, y) and output, t, its parameters' roles (g, b); another array by
    the lowering's name without its layer number (xhat1 -> xhat)."""
    gradient = next(iter(d.backward)).split("[")[0]  # dz
    # the value an op gives is its last forward rule (batch norm: s, xhat, then y); a loss's
    # first rule is what it saves (softmax-cross-entropy: y, then the loss)
    output = list(d.forward)[0 if layer.is_loss else -1].split("[")[0]
    roles = [role for role, _ in layer.param_shapes(use.args, FEATURES)]
    public = {"X": gradient[1:], "T": "t", "dX": gradient,
              **{name: role for (name, _), role in zip(low.params, roles)},
              **{f"d{name}": f"d{role}" for (name, _), role in zip(low.params, roles)}}
    if saved:
        public.setdefault(saved[0], output)
        public.setdefault(f"d{saved[0]}", f"d{output}")
    return lambda name: public.get(name, name.rstrip("0123456789").lower())


def _shape_text(shape, first: str) -> str:
    """A lowered array's shape in the wrapper, its sizes read from the first argument."""
    if tuple(shape) == (N, FEATURES):
        return f"{first}.shape"
    sizes = ", ".join(f"{first}.shape[0]" if size == N else f"{first}.shape[1]" if size == FEATURES else str(size)
                      for size in shape)
    return f"({sizes},)" if len(shape) == 1 else f"({sizes})"


def _lowered_wrapper(layer, base, direction, args, outputs, shapes, lowered_args, lowered_outputs, d,
                     constants, scratch=()) -> str:
    """The checked wrapper of a 2-D kernel printed from the lowering: the first array 2-D with at
    least one row and one feature, each other array's shape from it (T: the first's)."""
    function, first = f"{base}_{direction}", args[0]
    if direction == "forward":
        formulas = "; ".join(f"{key} = {sp.sstr(rule)}" for key, rule in d.forward.items())
        doc = f"{formulas} ({layer.summary}), on a batch of rows (N, F)"
        if layer.is_loss:
            doc += "; returns the loss" + (f" and {', '.join(outputs)}, saved for backward" if outputs else "")
    else:
        doc = "; ".join(f"{name} = {sp.sstr(d.backward[key])}" for name, key in zip(outputs, d.backward)) + (
            ". Never writes its inputs.")
    texts = {name: _shape_text(shapes.get(lowered, shapes["X"]), first)
             for name, lowered in zip([*args, *outputs, *scratch], [*lowered_args, *lowered_outputs, *scratch])}
    axis, one = ("classes", "class") if layer.is_loss else ("features", "feature")
    checks = [f'    if {first}.ndim != 2 or 0 in {first}.shape:',
              f'        raise ValueError(f"{function}: {first} must be 2-D (batch, {axis}) with at least one row '
              f'and one {one}, got shape {{{first}.shape}}")']
    return _wrapper(function, doc, args, constants, outputs, outputs[:1], texts.get, first, checks, {first}, "",
                    loss=layer.is_loss and direction == "forward", scratch=scratch)


def _emitter(layer, name: str):
    """An image op's emitter (through the op's base classes), else the kernels printed from
    the lowering of a one-node graph."""
    for cls in type(layer).__mro__:
        if cls in EMITTERS:
            return EMITTERS[cls]
    if layer.element_by_element or layer.size_args:
        return _one_node_kernels
    if callable(getattr(layer, "lower", None)):
        return _from_lowering
    raise SympropError(f"layer {name!r}: symprop has no lowering for {type(layer).__name__} ops")


def layers_module_body(registry=REGISTRY, backend=NUMBA) -> tuple[str, list[str]]:
    """The text of generated/layers.py below its header, and the layer names it covers: each
    layer's kernels printed from its lowering, the image ops' by their emitters (an op without
    per-layer kernels, ``layer_kernels = False``, is compiled in networks only)."""
    module = ModuleText(backend)
    names = [name for name, layer in registry.items() if layer.layer_kernels]
    for name in names:
        _emitter(registry[name], name)(registry[name], registry.derive(name), module)
    functions = list(dict.fromkeys(module.functions))  # a shared check (_images) once
    body = backend.module_start(module.helpers) + "\n\n" + "\n\n".join(functions)
    return body, names
