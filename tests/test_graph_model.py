"""The one graph model: net specs and graph files both parse into graph.Graph of graph.Node,
named values read and given by op nodes; a graph file's node is an Expression op that owns its
forward formula and its local partials (SymPy's diff, max and min at a tie by kinks' convention)."""
from __future__ import annotations

from importlib import resources

import pytest
import sympy as sp

from symprop.symbolic.graph import Graph, Node, parse_net
from symprop.symbolic.graphfile import parse_graph, symbol
from symprop.symbolic.ops.expression import Expression

SHIPPED = sorted(p.name for p in resources.files("symprop.symbolic").joinpath("graphs").iterdir()
                 if p.name.endswith(".toml"))


def _shipped(name):
    text = resources.files("symprop.symbolic").joinpath("graphs", name).read_text(encoding="utf-8")
    return parse_graph(text, name)


def test_the_shipped_graph_files_are_all_here():
    assert len(SHIPPED) >= 13 and "max-circuit.toml" in SHIPPED and "batchnorm-staged.toml" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_a_graph_file_is_a_graph_of_expression_nodes(name):
    gf = _shipped(name)
    graph = gf.graph
    assert type(graph) is Graph and all(type(node) is Node for node in graph.nodes)
    assert [node.name for node in graph.nodes] == list(gf.nodes)  # one node per staged formula
    defined = [*gf.inputs, *gf.parameters]
    for node in graph.nodes:
        op = node.op
        assert isinstance(op, Expression)
        # its inputs are exactly the formula's variables, in the order the file defines them
        assert set(node.inputs) == {s.name for s in op.formula.free_symbols}
        assert node.inputs == op.inputs
        assert list(node.inputs) == [n for n in defined if n in node.inputs]  # every read value comes first
        assert sp.Symbol(node.name, real=True) not in op.formula.free_symbols
        defined.append(node.name)
    # the accessors the transcripts used before read the same graph
    for node in graph.nodes:
        for value in node.inputs:
            assert node.name in gf.consumers(value)
        assert gf.ancestors(node.name) >= set(node.inputs)


@pytest.mark.parametrize("name", ["nested-neurons.toml", "staged-sigmoid-ratio.toml", "max-circuit.toml",
                                  "quadratic-model.toml", "batchnorm-staged.toml", "sigmoid-neuron-gates.toml"])
def test_each_node_s_local_partial_is_sympy_s_diff_at_the_given_values(name):
    gf = _shipped(name)
    values = dict(gf.given())
    checked = 0
    for node in gf.graph.nodes:
        op = node.op
        at = {symbol(n): values[n] for n in node.inputs}
        for arg in node.inputs:
            expected = sp.diff(op.formula, symbol(arg)).xreplace(at).doit()
            got = op.partials[arg].xreplace(at)
            scale = max(1, abs(sp.N(expected, 40)))
            assert abs(sp.N(got - expected, 40)) <= sp.Float("1e-30") * scale, (node.name, arg)
            checked += 1
        values[node.name] = op.forward(values)
        assert values[node.name] == op.formula.xreplace(at)
    assert checked >= 2


def test_at_a_tie_the_op_follows_the_kink_convention_not_sympy_s_half():
    gf = parse_graph('[inputs]\nx = 0\n[nodes]\nr = "max(x, 0)"\n', "tie.toml")
    op = gf.graph.node("r").op
    assert op.has_kink
    assert sp.diff(op.formula, symbol("x")).subs(symbol("x"), 0) == sp.S.Half  # SymPy leaves H(0) = 1/2
    assert op.partials["x"].xreplace({symbol("x"): 0}) == 0  # relu'(0) = 0, as PyTorch


def test_net_specs_and_graph_files_share_node_and_graph():
    chain = parse_net("affine(2,3) relu affine(3,1) mse")
    gf = _shipped("add-mul-circuit.toml")
    assert type(chain) is type(gf.graph) is Graph
    assert {type(node) for node in chain.nodes} == {type(node) for node in gf.graph.nodes} == {Node}
    # a chain's values are named by position: layer k reads v<k-1> (the first reads X)
    assert [(node.name, node.inputs) for node in chain.nodes] == [
        ("v1", ("X",)), ("v2", ("v1",)), ("v3", ("v2",)), ("v4", ("v3",))]
    assert chain.consumers("v2") == ["v3"] and chain.ancestors("v2") == {"v2", "v1", "X"}
    assert chain.node("v3").op.name == "affine"
    with pytest.raises(KeyError):
        chain.node("X")  # a value no node gives
    assert chain.spec == "affine(2,3) relu affine(3,1) mse" and chain.widths == [2, 3, 3, 1, 1]
