"""tests/conftest.py: a test that needs ../shared/data fails when the data is missing (CI always has it), and is
skipped instead with ``UMED_ALLOW_MISSING_DATA=1``.

The real conftest is copied into a pytester folder, where ``../shared/data`` (beside the folder's parent) does not
exist, and a small suite is run in-process with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")
SUITE = """
def test_fixture(brats_dir):
    pass


def test_helper(shared_data):
    shared_data("isbi2012", "images")
"""


def _run(pytester: pytest.Pytester) -> pytest.RunResult:
    assert not (pytester.path.parent.parent / "shared" / "data").exists()  # the copy sees no shared data
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_needs_data=SUITE)
    return pytester.runpytest("-p", "no:cacheprovider", "-rA")


def test_missing_shared_data_fails_with_a_clear_message(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.delenv("UMED_ALLOW_MISSING_DATA", raising=False)
    result = _run(pytester)
    result.assert_outcomes(errors=1, failed=1)  # the fixture errors at set-up, the helper fails the test
    expected = str(pytester.path.parent.parent / "shared" / "data" / "brats2015")
    result.stdout.fnmatch_lines([f"*{expected}*: shared test data missing*UMED_ALLOW_MISSING_DATA=1*"])
    result.stdout.no_fnmatch_line("*Traceback*")


def test_allow_missing_data_turns_the_failure_into_a_skip(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("UMED_ALLOW_MISSING_DATA", "1")
    result = _run(pytester)
    result.assert_outcomes(skipped=2)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*SKIPPED*isbi2012*shared test data missing*"])
