"""word2vec's CBOW with negative sampling: the whole model in one op, which is also its loss.

``cbow(V,D,C,K)`` reads C + 1 + K token ids per example, X[n, :] = (C context ids, the
target id, K negative ids), each a whole number from 0 to V-1. The context's mean input
vector h = (1/C) sum_c Win[x_c] scores the target and each negative against its output
vector (rows of Wout): s_j = Wout[x_{C+j}] . h, j = 0 the target, 1..K the negatives. The loss
is -log sigmoid(s_0) - sum_k log sigmoid(-s_k), mean over the batch, written with softplus
(-log sigmoid(s) = softplus(-s)), which never overflows.

It is one op, not an embedding followed by a loss, because the loss reads the output table
Wout at ids from X: no existing loss takes parameters or token ids, and a single loss op
needs no new seam. A net spec is this one op; its targets T are not read (the target id
is in X), and T has X's width because a loss's targets match the width entering it.

SymPy derives the gradients: each score's gradient is sigmoid(s_0) - 1 (target) or
sigmoid(s_k) (negative), divided by N; Wout's gradient is a scatter-add of ds_j h into the rows
the target and negatives picked; Win's is a scatter-add of dh / C into the context rows
(a word repeated in the context, or a negative equal to a context word, simply adds twice).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..errors import SympropError
from ..indexcalc import resolve
from ..ir import Assignments, Call, Comment, Let, Loop, Token, array, ratio
from ..stable import canonical_form, raw_sigmoid, stabilize
from ..text import tr
from .base import N, Derivation, Label, Op, Step, positive_sizes
from .builders import LOSS

V, D, C, K = sp.symbols("V D C K", integer=True, positive=True)  # vocabulary, width, context, negatives


def _symbols():
    n, j, c, d, v, q, m = sp.symbols("n j c d v q m", integer=True)
    bases = (sp.IndexedBase(name) for name in ("x", "Win", "Wout", "h", "s", "ds", "dh"))
    return (n, j, c, d, v, q, m), tuple(bases)


@dataclass(frozen=True)
class CBOW(Op):
    """L = (1/N) sum_n [softplus(-s[n,0]) + sum_k softplus(s[n,k])], s[n,j] = Wout[x[n,C+j]] . h[n]."""

    value_stem = None  # a loss: it gives L
    starts_layer = True  # its tables are Win1 and Wout1
    layer_kernels = False  # its ids per example are fixed by its arguments: compiled in networks only
    is_loss = True
    hidden_name = ("the context mean", "上下文平均")  # what h is, in a transcript's notes (English, Chinese)

    name: str
    summary: str
    inputs: tuple[str, ...] = ("x", "Win", "Wout")

    def parse_args(self, inner, where):
        return positive_sizes(inner, (4,), where, f"{self.name} needs the vocabulary size, the width, the context "
                              f"words and the negatives per example, e.g. {self.name}(5,2,2,2)")

    def sizes(self, args):
        """(V, D, C, K) from the spec's arguments."""
        return args

    def hidden_note(self, table):
        """What h is, for a transcript line (English, Chinese)."""
        return (f"the mean of the context words' rows of {table}", f"上下文词在 {table} 中各行的平均")

    def input_gradient_note(self, table, context):
        """What the input table's gradient is, for a transcript line (English, Chinese)."""
        return (f"{table}'s gradient, a scatter-add of dh / {context} into each context word's row (a repeated word "
                "adds twice)", f"{table} 的梯度：把 dh / {context} 散射相加到每个上下文词的行（重复的词加两次）")

    def input_width(self, args):
        _, _, context, negatives = self.sizes(args)
        return context + 1 + negatives  # context ids, the target id, negative ids

    def param_shapes(self, args, width):
        return [("Win", tuple(args[:2])), ("Wout", tuple(args[:2]))]

    def derive(self) -> Derivation:
        (n, j, c, d, v, q, m), (x, Win, Wout, h, s, ds, dh) = _symbols()
        u = sp.Symbol("u", real=True)
        hidden = sp.Sum(Win[x[n, c], d], (c, 0, C - 1)) / C
        score = sp.Sum(Wout[x[n, C + j], d] * h[n, d], (d, 0, D - 1))
        target_loss, negative_loss = -sp.log(raw_sigmoid(u)), -sp.log(raw_sigmoid(-u))
        d_target = canonical_form(sp.diff(target_loss, u), [u]).subs(u, s[n, 0])
        d_negative = canonical_form(sp.diff(negative_loss, u), [u]).subs(u, s[n, j])
        chain_scores = sp.Sum(ds[n, j] * score, (n, 0, N - 1), (j, 0, K))
        dWout = resolve(chain_scores.diff(Wout[v, q]))
        dh_rule = resolve(chain_scores.diff(h[m, q])).xreplace({m: n})
        chain_hidden = sp.Sum(dh[n, d] * hidden, (n, 0, N - 1), (d, 0, D - 1))
        dWin = resolve(chain_hidden.diff(Win[v, q]))
        row_loss = stabilize(target_loss).subs(u, s[n, 0]) + sp.Sum(stabilize(negative_loss).subs(u, s[n, j]),
                                                                     (j, 1, K))
        steps = [
            Step("context mean", h[n, d], hidden, "the mean of the context words' input vectors (rows of Win)"),
            Step("scores", s[n, j], score, "j = 0: the target word's output vector; j = 1..K: the negatives'"),
            Step("loss of one example", Label("L_n", "L_n"), row_loss,
                 "-log sigmoid(s) = softplus(-s) and -log sigmoid(-s) = softplus(s): never overflows"),
            Step("target score", Label("dL_n/ds[n,0]", r"\frac{\partial L_n}{\partial s_{n,0}}"), d_target,
                 "SymPy's diff of -log sigmoid(s), stabilized"),
            Step("negative scores", Label("dL_n/ds[n,k]", r"\frac{\partial L_n}{\partial s_{n,k}}"), d_negative,
                 "SymPy's diff of -log sigmoid(-s), stabilized"),
            Step("mean over the batch", ds[n, 0], d_target / N,
                 "L = (1/N) sum_n L_n; a negative's is sigmoid(s)/N"),
            Step("differentiate by Wout[v,q], sift the deltas", sp.IndexedBase("dWout")[v, q], dWout,
                 "a scatter-add into the rows the target and the negatives picked"),
            Step("differentiate by h[n,q]", dh[n, q], dh_rule, "every score of the example reads h"),
            Step("differentiate by Win[v,q], sift the deltas", sp.IndexedBase("dWin")[v, q], dWin,
                 "a scatter-add of dh / C into the context rows: a repeated word adds twice"),
            Step("the ids", Label("dx", "dx"), sp.S.Zero, "token ids are data, not differentiable"),
        ]
        return Derivation(self.name, self.summary, self.inputs,
                          {"h": hidden, "s": score, "L_n": row_loss},
                          {"ds_target": d_target / N, "ds_negative": d_negative / N, "dWout": dWout, "dh": dh_rule,
                           "dWin": dWin}, ("x",), steps,
                          ["x[n,:] holds C context ids, the target id, K negative ids (whole numbers 0..V-1)",
                           "the targets T are not read"],
                          ["softplus for -log sigmoid; sigmoid(s) printed without overflow"],
                          {"ds_target": sp.diff(target_loss, u).subs(u, s[n, 0]) / N,
                           "ds_negative": sp.diff(negative_loss, u).subs(u, s[n, j]) / N})

    def lower(self, lowering, use):
        """Forward: check the ids, average the context rows into h. Loss: the scores and their
        softplus terms. Backward: the score gradients, then the derived scatter-adds into Wout's
        picked rows and Win's context rows."""
        rows, width, context, negatives = self.sizes(use.args)
        if lowering.values[-1] != "X":
            raise SympropError(f"{use.where}: {self.name} reads token ids from the data X: it must be the only layer")
        Win, Wout = lowering.names.params["Win"], lowering.names.params["Wout"]
        lowering.params += [(Win, (rows, width)), (Wout, (rows, width))]
        hidden = lowering.buffer(f"h{use.position}", (N, width))
        lowering.scratch.append(hidden)  # the forward pass writes it
        scores = lowering.buffer(f"s{use.position}", (N, negatives + 1))
        dscores = lowering.buffer(f"ds{use.position}", (N, negatives + 1))
        dhidden = lowering.buffer(f"dh{use.position}", (N, width))
        dWin, dWout = lowering.buffer(f"d{Win}", (rows, width)), lowering.buffer(f"d{Wout}", (rows, width))
        der = lowering.derivation(self)
        (n, j, c, d, v, q, _), _ = _symbols()
        X = sp.IndexedBase("X")
        at = lambda name, *i: sp.IndexedBase(name)[i]  # noqa: E731
        sizes = {C: context, K: negatives, D: width}

        def concrete(expr):
            """The derived formula at this op's sizes, its ids as the kernel's Token(X[n, ...]) and
            its arrays as this network's names."""
            expr = expr.subs(sizes).doit()
            expr = expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base.label.name == "x",
                                lambda e: Token(X[e.indices]))
            names = {"Win": Win, "Wout": Wout, "h": hidden, "s": scores, "ds": dscores, "dh": dhidden}
            return expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base.label.name in names,
                                lambda e: at(names[e.base.label.name], *e.indices))

        lowering.forward += [
            Comment(f"layer {use.position}: {use.text} ({context + 1 + negatives} token ids per example "
                    f"-> {hidden})"),
            Call("_token_ids", (array("X"), rows), f"every X[n, t] is a whole number from 0 to {rows - 1}",
                 (Comment("the transcript's ids are checked as it reads them"),)),
            Loop(n, N, (Loop(d, width, (Let(at(hidden, n, d), concrete(der.forward["h"]), note=tr(
                *self.hidden_note(Win))),)),))]
        score_note = tr(f"the score: a row of {Wout} (j = 0 the target, then the negatives) dotted with {hidden}",
                        f"分数：{Wout} 的一行（j = 0 为目标词，其后为负样本）与 {hidden} 的点积")
        row_loss = concrete(der.forward["L_n"])
        lowering.loss = [
            Comment(f"layer {use.position}: {use.text}: softplus(-s) for the target, softplus(s) for each negative "
                    "(never overflows), mean over the batch"),
            Let(LOSS, sp.Integer(0), note=tr("the loss, summed over the examples", "误差，对各样本求和")),
            Loop(n, N, (Loop(j, negatives + 1, (Let(at(scores, n, j), concrete(der.forward["s"]), note=score_note),)),
                        Let(LOSS, row_loss, augmented=True))),
            Let(LOSS, ratio(LOSS, N))]

        def scatter(rule, table, gradient):
            """(target, term) of a derived scatter-add: every sum's body, the delta(v, x[..]) dropped,
            added to the row x[..] of the table's gradient."""
            (delta,) = rule.atoms(sp.KroneckerDelta)
            picked = next(arg for arg in delta.args if isinstance(arg, sp.Indexed))
            term = rule.replace(lambda e: isinstance(e, sp.Sum), lambda e: e.function).xreplace({delta: sp.S.One})
            return at(gradient, *concrete(sp.IndexedBase(table)[picked, q]).indices), concrete(term)

        out_target, out_term = scatter(der.backward["dWout"], "Wout", dWout)
        in_target, in_term = scatter(der.backward["dWin"], "Win", dWin)
        score_rule = lambda key: concrete(der.backward[key])  # noqa: E731
        lowering.prepend_backward([
            Comment(f"layer {use.position}: {use.text}: the scores' gradients, then scatter-adds into {Wout} "
                    f"and {Win}"),
            Loop(n, N, (Let(at(dscores, n, 0), score_rule("ds_target"), note=tr(
                "the target's score: (sigmoid(s) - 1) / N", "目标词的分数：(sigmoid(s) - 1) / N")),
                        Loop(j, negatives + 1, (Let(at(dscores, n, j), score_rule("ds_negative"), note=tr(
                            "a negative's score: sigmoid(s) / N", "负样本的分数：sigmoid(s) / N")),), start=1))),
            Loop(v, rows, (Loop(q, width, (Let(at(dWout, v, q), sp.Integer(0)),
                                           Let(at(dWin, v, q), sp.Integer(0)))),)),
            Loop(n, N, (Loop(j, negatives + 1, (Loop(q, width, (Assignments(
                ((out_target, out_term),), accumulate=frozenset({out_target}), notes={out_target: tr(
                    f"{Wout}'s gradient, a scatter-add: each score adds its gradient times {hidden} to the row it "
                    "picked",
                    f"{Wout} 的梯度（散射相加）：每个分数把它的梯度乘以 {hidden} 加到其所选的行上")}),)),)),)),
            Loop(n, N, (Loop(q, width, (Let(at(dhidden, n, q), concrete(der.backward["dh"]), note=tr(
                f"{self.hidden_name[0]}'s gradient: every score reads it",
                f"{self.hidden_name[1]}的梯度：每个分数都读取它")),)),)),
            Loop(n, N, (Loop(c, context, (Loop(q, width, (Assignments(
                ((in_target, in_term),), accumulate=frozenset({in_target}), notes={in_target: tr(
                    *self.input_gradient_note(Win, context))}),)),)),)),
        ])


@dataclass(frozen=True)
class SkipGram(CBOW):
    """Skip-gram with negative sampling, one (centre, context) pair per example: the centre
    word's input vector scores the context word and K negatives. It is CBOW with one context
    word (the centre), so its derivation is CBOW's at C = 1; a window of C context words is C
    examples, as word2vec trains on pairs."""

    inputs: tuple[str, ...] = ("x", "Win", "Wout")
    hidden_name = ("the centre word's vector", "中心词向量")

    def parse_args(self, inner, where):
        return positive_sizes(inner, (3,), where, f"{self.name} needs the vocabulary size, the width and the "
                              f"negatives per example, e.g. {self.name}(5,2,2)")

    def sizes(self, args):
        rows, width, negatives = args
        return rows, width, 1, negatives

    def hidden_note(self, table):
        return (f"the centre word's row of {table}", f"中心词在 {table} 中的行")

    def input_gradient_note(self, table, context):
        return (f"{table}'s gradient, a scatter-add of dh into the centre word's row",
                f"{table} 的梯度：把 dh 散射相加到中心词的行")

    def derive(self) -> Derivation:
        cbow = super().derive()
        at_one = lambda e: e.subs(C, 1).doit() if isinstance(e, sp.Basic) else e  # noqa: E731
        notes = {"context mean": ("centre word", "the centre word's input vector (a row of Win), x[n,0]"),
                 "differentiate by Win[v,q], sift the deltas": (None, "a scatter-add of dh into the centre word's row")}
        steps = [Step(notes.get(s.title, (None,))[0] or s.title, s.lhs, at_one(s.rhs),
                      notes.get(s.title, (None, s.note))[1]) for s in cbow.steps]
        return Derivation(self.name, self.summary, self.inputs, {k: at_one(v) for k, v in cbow.forward.items()},
                          {k: at_one(v) for k, v in cbow.backward.items()}, cbow.saved, steps,
                          ["x[n,:] holds the centre id, the context id, K negative ids (whole numbers 0..V-1)",
                           "the targets T are not read"], cbow.stability,
                          {k: at_one(v) for k, v in cbow.raw_backward.items()})
