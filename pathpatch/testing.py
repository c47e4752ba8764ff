"""A pytest helper: assert that a hypothesis file holds, inside a user's own test suite.

    from pathpatch.testing import assert_hypothesis

    def test_permute_circuit():
        assert_hypothesis("hypotheses/permute.toml")
"""

from pathlib import Path

from pathpatch.graphs.circuit import from_json
from pathpatch.graphs.hypotheses import load_hypothesis
from pathpatch.graphs.pipeline import CheckReport, check


def assert_hypothesis(path: "str | Path", circuit: "str | Path | None" = None, device: str = "cpu") -> CheckReport:
    """Check every claim of the file; raise AssertionError listing the failed claims. Returns the report."""
    report = check(load_hypothesis(path), from_json(circuit) if circuit else None, device=device)
    if not report.passed:
        raise AssertionError("hypothesis failed:\n" + report.text())
    return report
