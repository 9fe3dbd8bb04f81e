"""The default suite leaves the reliability tier out, yet a reliability test named on the command line
runs (tests/conftest.py: `pytest_configure`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def collected(*args: str) -> tuple[int, int]:
    """(tests selected, tests deselected) of a `pytest --collect-only` with `args`."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--collect-only", "-n0", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    last = done.stdout.strip().splitlines()[-1]  # "3 tests collected", "3/50 tests collected (47
    found = re.match(r"(\d+|no)(?:/\d+)? tests? collected", last)  # deselected)", "no tests collected ..."
    assert found, done.stdout[-2000:] + done.stderr[-2000:]
    deselected = re.search(r"\((\d+) deselected\)", last)
    return (0 if found[1] == "no" else int(found[1])), int(deselected[1]) if deselected else 0


def test_a_reliability_file_named_runs_and_the_default_suite_leaves_the_tier_out() -> None:
    fuzz, footer = "tests/reliability/test_fuzz.py", "tests/test_footer.py"
    assert collected(fuzz) == (3, 0)  # named: it runs, despite the default `-m 'not reliability'`
    selected, deselected = collected("-m", "reliability", fuzz, footer)
    assert (selected, deselected > 0) == (3, True)  # an explicit -m is kept: the footer's tests go
    # the whole suite by default (its other files ignored here, to be quick): the tier is left out
    assert collected("tests", "--ignore-glob=tests/test_*.py", "-k", "test_fuzz")[0] == 0
