"""The shipped notebook, examples/tour.ipynb, runs from top to bottom in a headless kernel of
this environment (ipykernel, driven by nbclient) and shows what each step promises."""
import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook test needs the test extra (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="the notebook test needs the test extra (nbclient)")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "tour.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook after a run; its cells by position, code cells only."""
    runtime = tmp_path_factory.mktemp("jupyter-runtime")
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")  # silences jupyter_core's deprecation notice
    os.environ["JUPYTER_RUNTIME_DIR"] = str(runtime)     # connection files in a fresh folder
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), \
        "the shipped notebook keeps no outputs (clear them before committing)"
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    return [c for c in notebook.cells if c.cell_type == "code"]


def output(cell, mime):
    """The data of ``mime`` (or the printed text, mime="stream") a cell produced."""
    for out in cell.outputs:
        assert out.output_type != "error", out
        if mime == "stream" and out.output_type == "stream":
            return out.text
        if mime in out.get("data", {}):
            return out.data[mime]
    raise AssertionError(f"no {mime} output in cell {cell.source[:60]!r}: {cell.outputs}")


def cell(cells, starts):
    return next(c for c in cells if c.source.startswith(starts))


def test_every_cell_ran_in_order(executed):
    assert len(executed) >= 10
    assert [c.execution_count for c in executed] == list(range(1, len(executed) + 1))


def test_derivations_show_as_markdown_with_formulas(executed):
    sigmoid = output(cell(executed, "import symprop"), "text/markdown")
    assert sigmoid.startswith("## `sigmoid`") and "$$" in sigmoid
    assert r"\mathrm{dx} = \mathrm{dout} y \left(1 - y\right)" in sigmoid  # the derived rule; names upright
    assert "softplus" in output(cell(executed, 'symprop.derive("x*tanh'), "text/markdown").lower()


def test_the_worked_example_shows_its_transcript_and_exact_values(executed):
    transcript = output(cell(executed, "mazur = "), "text/markdown")
    assert transcript.startswith("# Mazur") and r"\frac{\partial E}{\partial w_{5}}" in transcript
    values = output(cell(executed, 'print("dE/dw5'), "stream")
    assert re.search(r"dE/dw5 = 0\.0821670405", values)
    assert "75 formulas" in output(cell(executed, "page = "), "stream")


def test_the_check_shows_a_table_and_finds_the_first_wrong_step(executed):
    table = output(cell(executed, "report = "), "text/markdown")
    assert "| ✅ right | `dE/dw5` |" in table and "| ❌ wrong | `dE/dw1` |" in table
    assert "all right: False | first wrong step: dE/dw1" in output(cell(executed, 'print("all right'), "stream")


def test_the_kernel_is_generated_timed_and_trained_with_a_plot(executed):
    kernel = output(cell(executed, "import inspect"), "stream")
    assert "affine(2,3) tanh affine(3,2) mse" in kernel and "GENERATED FILE" in kernel
    timing = output(cell(executed, "import time"), "stream")
    assert float(re.search(r"([\d.]+) µs per fused SGD step", timing).group(1)) > 0
    trained = output(cell(executed, "from symprop.training"), "stream")
    assert float(re.search(r"test accuracy ([\d.]+)", trained).group(1)) > 0.75
    picture = output(cell(executed, "import tempfile"), "image/png")
    assert len(picture) > 10_000  # base64 of a real figure
