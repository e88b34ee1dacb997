"""The tutorial's code blocks run as written (tests/test_docs.py runs the other pages')."""
from test_docs import SLOW_PAGE, _run_page


def test_every_code_block_of_the_tutorial_meant_to_run_runs(tmp_path):
    _run_page(SLOW_PAGE, tmp_path)
