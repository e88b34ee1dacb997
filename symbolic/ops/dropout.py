"""Inverted dropout: y = x m / (1 - p) for a 0/1 mask m that keeps each unit with
probability 1 - p; the identity at inference.

The mask is an input of the training step, not drawn inside it: a gradient check holds it
fixed, and training draws it from a seeded generator (``make_masks`` of a network module).
Dividing by 1 - p at training time keeps each unit's expected value, so inference needs no
rescaling."""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..errors import SympropError
from .base import N, Derivation, Op, Step, partial, real
from ..ir import (Assignments, Comment, Let, element as at)
from ..text import tr
from .builders import (CHAIN_NOTE, _local_note)


@dataclass(frozen=True)
class Dropout(Op):
    """dropout(P): each unit dropped with probability P (0 <= P < 1), survivors scaled by 1/(1-P)."""

    name: str
    summary: str
    inputs: tuple[str, ...] = ("x", "m")
    element_by_element = True
    run_time_args = (("p", 0.5),)

    def input_arrays(self, position: int) -> dict[str, str]:
        """The 0/1 mask is an input of the step (so a gradient check can hold it fixed)."""
        return {"m": f"mask{position}"}

    def parse_args(self, inner, where):
        try:
            rate = float(inner) if inner is not None else None
        except ValueError:
            rate = None
        if rate is None or not 0 <= rate < 1:
            raise SympropError(f"{where}: {self.name} needs a drop probability P with 0 <= P < 1, "
                               f"e.g. {self.name}(0.5)")
        return (rate,)

    def derive(self) -> Derivation:
        x, m, dy = real("x"), real("m"), real("dy")
        p = sp.Symbol("p", positive=True)
        y = x * m / (1 - p)
        local = sp.diff(y, x)
        rule = dy * local
        steps = [Step("forward (training)", real("y"), y, "m is 0 or 1, kept with probability 1 - p"),
                 Step("forward (inference)", real("y"), x, "the expected value of the training output"),
                 Step("local derivative dy/dx", partial("y", "x"), local, "SymPy's diff"),
                 Step("backward", real("dx"), rule, "upstream times local: a dropped unit passes no gradient")]
        return Derivation(self.name, self.summary, self.inputs, {"y": y}, {"dx": rule}, ("m",), steps,
                          ["the mask m is an input (0 or 1); p is the drop probability written in the spec"],
                          [], {"dx": rule})

    def lower(self, lowering, use):
        """Inverted dropout: y = x m / (1 - p) with the 0/1 mask m an input of the step (so a
        gradient check can hold it fixed); identity at inference."""
        d = lowering.derivation(self)
        (rate,) = use.args
        source, width = lowering.values[-1], lowering.width
        mask = self.input_arrays(use.position)["m"]
        lowering.masks.append((mask, width, rate))
        out = lowering.buffer(lowering.names.value, (N, width))
        p = sp.Symbol("p", positive=True)
        # the spec's number, exactly; a symbol (the per-layer kernels' p, given at run time) stays one
        rate = rate if isinstance(rate, sp.Basic) else sp.Rational(str(rate))
        names = {"x": at(source, "n", "j"), "m": at(mask, "n", "j")}
        note = tr(f"{use.text}: the input times its mask, divided by 1 - p", f"{use.text}：输入乘以掩码，再除以 1 - p")
        lowering.forward += [Comment(f"layer {use.position}: {use.text} (mask {mask}: 0 or 1)"), lowering.each_element(
            Assignments(((at(out, "n", "j"), d.forward["y"].xreplace({p: rate})),), names,
                        notes={at(out, "n", "j"): note}))]
        lowering._inference_statements = [Comment(f"layer {use.position}: {use.text} (inference: identity)"),
                                      lowering.each_element(Let(at(out, "n", "j"), at(source, "n", "j")))]
        dsource = lowering.buffer(f"d{source}", (N, width))
        rule = d.backward["dx"].xreplace({p: rate})
        lowering.prepend_backward([Comment(f"layer {use.position}: {use.text}"), lowering.each_element(
            Assignments(((at(dsource, "n", "j"), rule),), {**names, "dy": at(f"d{out}", "n", "j")},
                        {at(dsource, "n", "j"): f"dL/d{source} = {sp.sstr(d.backward['dx'])}"}, upstream="dy",
                        notes={at(dsource, "n", "j"): (_local_note(use.text, (": a dropped unit passes none",
                                                                              "：被丢弃的单元不传梯度")), CHAIN_NOTE)}))])
        lowering.values.append(out)
