"""What every op shares: the Derivation it returns, the Op base class, and small helpers.

An op is one class (or one instance of a family class) that knows its spec arguments, its
shapes, its forward formula and how SymPy derives its backward rules; ``symbolic/layers.py``
holds the registry of instances."""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from ..errors import SympropError
from ..stable import Sigmoid

MAX_DERIVE_SECONDS = 9.0  # a formula layer's whole derivation (each rewrite has its own 5 s)
MAX_DERIVATIVE_OPS = 2000  # operations in one local derivative, as SymPy's count_ops counts them

# Sizes are symbols, so no derivation depends on them: batch N, inputs I, outputs J, classes K.
N, I, J, K = sp.symbols("N I J K", integer=True, positive=True)


@dataclass(frozen=True)
class Label:
    """A left-hand side that is a name, not a formula: dL/dz[j] in text, its LaTeX for Markdown."""

    text: str
    latex: str


def partial(of: str, wrt: str, of_tex: str | None = None, wrt_tex: str | None = None) -> Label:
    return Label(f"d{of}/d{wrt}",
                 rf"\frac{{\partial {of_tex or of}}}{{\partial {wrt_tex or wrt}}}")


@dataclass(frozen=True)
class Step:
    """One line of a derivation: ``lhs = rhs``, with a short reason."""

    title: str
    lhs: sp.Basic
    rhs: sp.Basic
    note: str = ""


@dataclass
class Derivation:
    """Everything symprop knows about one layer, derived from its forward formula."""

    layer: str
    summary: str
    inputs: tuple[str, ...]
    forward: dict[str, sp.Basic]  # output name -> canonical (stable) forward formula
    backward: dict[str, sp.Basic]  # gradient name ("dx") -> rule in upstream and saved values
    saved: tuple[str, ...]  # forward values the backward rule reads
    steps: list[Step] = field(default_factory=list)
    conventions: list[str] = field(default_factory=list)
    stability: list[str] = field(default_factory=list)
    raw_backward: dict[str, sp.Basic] = field(default_factory=dict)  # before canonical form
    # sums over the normalised vector that the backward rules read by name (batch and layer
    # norm's sum_dy, sum_dy_xhat): name -> its definition (a Sum over the vector's index n)
    named_sums: dict[str, sp.Basic] = field(default_factory=dict)

    def _repr_markdown_(self) -> str:
        """Jupyter shows a derivation that is a cell's value as its Markdown (formulas by MathJax)."""
        from ..render import derivation_markdown  # render imports this module

        return derivation_markdown(self)


def fresh_name(base: str, taken) -> str:
    """base, or base with b, c, ... appended while taken: the values after one affine layer
    are h1, then h1b for a second activation in a row (relu tanh)."""
    for suffix in ["", *"bcdefghijklmnopqrstuvwxyz"]:
        if base + suffix not in taken:
            return base + suffix
    raise SympropError(f"more than 26 layers in a row after one affine layer ({base})")


def positive_sizes(inner, counts, where: str, needs: str) -> tuple[int, ...]:
    """A spec's arguments as positive whole numbers, as many as one of ``counts``; anything else
    is one line: ``where``, then ``needs`` (the op's name, what it takes and an example)."""
    try:
        args = tuple(int(a) for a in (inner or "").split(","))
    except ValueError:
        args = ()
    if len(args) not in counts or min(args) < 1:
        raise SympropError(f"{where}: {needs}")
    return args


@dataclass(frozen=True)
class Product:
    """One BLAS product of a training step as the kernel calls it, ``count`` times: a (rows,
    inner) matrix by an (inner, columns) one, each operand stored as read or read as a stored
    array's transpose (X^T dY reads X, stored (N, I), transposed); ``shared`` names the operands
    ("left", "right", "out") that are one array for every repeat (a weight, a reused scratch),
    the others one matrix per repeat (an image's columns, a step's states). The bench times a
    step's products alone at these shapes and layouts: the roofline its step cannot beat."""

    what: str
    rows: int
    inner: int
    columns: int
    count: int = 1
    left_transposed: bool = False
    right_transposed: bool = False
    shared: tuple[str, ...] = ()

    @property
    def flop(self) -> int:
        return 2 * self.count * self.rows * self.inner * self.columns


def weight_products(rows: int, inputs: int, outputs: int, first: bool, weight: str = "W") -> list[Product]:
    """A weight (inputs, outputs) applied to rows, as one product each: X W forward, dW = X^T dY
    and, unless the layer is the first (nothing upstream needs it), dX = dY W^T."""
    products = [Product(f"X {weight}", rows, inputs, outputs),
                Product(f"d{weight} = X^T dY", inputs, rows, outputs, left_transposed=True)]
    if not first:
        products.append(Product(f"dX = dY {weight}^T", rows, outputs, inputs, right_transposed=True))
    return products


def real(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def _apply_kink_convention(expr):
    """Heaviside(u) -> Heaviside(u, 0) where SymPy left H(0) open: the side of a max or min
    that loses a tie (kinks.py; the derivative of max(0, u) is 0 at u = 0)."""
    return expr.replace(lambda e: isinstance(e, sp.Heaviside) and e.args[1] == sp.S.Half,
                        lambda e: sp.Heaviside(e.args[0], 0))


def _in_terms_of_output(derivative, forward, output, inputs):
    """Rewrite derivative using the saved output y = forward, if that removes the inputs."""
    if forward in inputs or not forward.free_symbols:
        return None
    expr = derivative
    if isinstance(forward, Sigmoid):  # sigmoid(-u) = 1 - sigmoid(u), then name sigmoid(u) y
        expr = expr.xreplace({Sigmoid(-forward.args[0]): 1 - forward})
    expr = expr.xreplace({forward: output})
    if expr.free_symbols & set(inputs):
        return None
    return sp.factor(expr) if sp.count_ops(sp.factor(expr)) <= sp.count_ops(expr) else expr


class Op:
    """What every op answers about itself in a net spec (``graph.parse_net`` asks; nothing
    branches on an op's name). The defaults fit an op with no arguments and no parameters that
    keeps the number of features, e.g. an activation."""

    is_loss = False  # a loss ends a network: it takes the targets T and gives the scalar L
    # How a net spec's values are named, once, by graph.chain_names (kernels, transcripts and
    # checker keys all read those names): the value an op gives is <value_stem><layer> (h1 after
    # the first affine layer; None: a loss, which gives L), the layer counted by the ops that
    # start one (affine, conv2d: z1 with W1, b1); its parameters as param_names says.
    value_stem: str | None = "h"
    starts_layer = False
    accepts_images = False  # takes (C, H, W) images as well as features (activations, conv ops)
    applies = ""  # a loss that takes logits names the activation it applies itself
    one_hot_targets = False  # a loss whose derivation uses sum_k t[k] = 1 (its targets are checked)
    mixes_rows = False  # a row's output depends on the other rows of the batch (batch norm's statistics)
    # per-layer kernels in generated/layers.py, sized by the arrays they are given; False for an op
    # whose spec arguments fix sizes a kernel cannot read from its arrays (a recurrent layer's
    # steps): it is compiled inside network modules only
    layer_kernels = True
    # each output element reads only the same element of each input (an activation, add, dropout):
    # its per-layer kernels take arrays of any shape
    element_by_element = False
    # (name, default) of each number a spec writes that the per-layer kernels take at run time
    # instead (dropout's p): the one-node graph they are printed from holds it as a symbol; an
    # image op's are whole numbers, named by integer symbols (a pool's window k, without a
    # default, and its stride, whose default is k)
    run_time_args: tuple = ()
    # per-layer kernels on batches of NCHW images (N, C, H, W) rather than rows (conv2d, pooling)
    image_kernels = False
    # the sizes a spec writes that the per-layer kernels read off their arrays instead (affine's I
    # and J): symbols in the one-node graph they are printed from
    size_args: tuple = ()

    def one_hot_group(self, args) -> int | None:
        """How many targets make one one-hot group where a loss has one_hot_targets: None, the
        whole row; a per-token loss, each token's classes (one 1 among each token's K)."""
        return None

    def network_problem(self) -> str | None:
        """Why this op cannot be a layer of a network, or None."""
        return None

    def parse_args(self, inner: str | None, where: str) -> tuple:
        """The arguments written in NAME(ARGS) (inner is None without parentheses)."""
        if inner is not None:
            raise SympropError(f"{where}: {self.name} takes no arguments")
        return ()

    def format_args(self, args) -> str:
        """The arguments as the canonical spec writes them (parse_args reads them back)."""
        return ",".join(str(arg) for arg in args)

    def input_width(self, args) -> int | None:
        """The number of features this op needs, when its arguments fix it."""
        return None

    def input_channels(self, args) -> int | None:
        """The channels of the images this op needs, when it starts a network of images."""
        return None

    def shape_problem(self, args, shape) -> str | None:
        """Why this op cannot take a value of this shape (features: an int; images: (C, H, W))."""
        if isinstance(shape, tuple) and not self.accepts_images:
            return (f"{self.name} takes features but the layer before gives images {shape}; "
                    "put flatten before it")
        return None

    def output_width(self, args, width: int) -> int:
        """The width (or image shape) this op gives for an input of that width (or shape)."""
        return width

    def param_shapes(self, args, width: int) -> list[tuple[str, tuple[int, ...]]]:
        """(role, shape) of each learnable parameter, e.g. [("W", (2, 3)), ("b", (3,))]."""
        return []

    def step_products(self, args, shape_in, shape_out, batch: int, first: bool) -> list[Product]:
        """The matrix products (BLAS calls) one training step of this layer runs on a batch, as
        its kernel calls them: its forward products and their backward ones, without the
        input's gradient where it is the network's ``first`` layer of products (nothing
        upstream needs it). Elementwise work is not a product."""
        return []

    def input_arrays(self, position: int) -> dict[str, str]:
        """role -> the name of an array the user gives besides X and the parameters (a
        dropout's mask: mask3 at layer position 3); most ops read none."""
        return {}

    def param_names(self, roles, layer: int, position: int, taken) -> dict[str, str]:
        """role -> the parameter's name: <role><layer> (W1, g2), unless that name is taken."""
        return {role: fresh_name(f"{role}{layer}", taken) for role in roles}
