"""The tutorial's code blocks run as written (tests/test_docs.py runs the other pages')."""
from test_docs import SLOW_PAGE, _run_page, code_blocks


def test_every_code_block_of_the_tutorial_meant_to_run_runs(tmp_path):
    runnable = sum(block.runs for block in code_blocks(SLOW_PAGE))
    assert runnable > 0 and _run_page(SLOW_PAGE, tmp_path) == runnable
