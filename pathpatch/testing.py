"""A pytest helper: assert that a hypothesis file holds, inside a user's own test suite.

    from pathpatch.testing import assert_hypothesis

    def test_my_circuit():
        assert_hypothesis("circuits/my_model.toml")                       # the file's own model and task
        assert_hypothesis("circuits/my_model.toml", model=my_model, task=my_task)   # or objects
"""

from pathlib import Path

import torch

from pathpatch.circuit.circuit import Circuit, from_json
from pathpatch.pipeline import CheckReport, check
from pathpatch.task.groups import AnyTask


def assert_hypothesis(
    path: "str | Path",
    circuit: "str | Path | Circuit | None" = None,
    device: str = "cpu",
    model: "str | Path | torch.nn.Module | None" = None,
    task: "str | Path | AnyTask | None" = None,
) -> CheckReport:
    """Check every claim of the file; raise AssertionError unless every claim passes. Returns the report.

    An inconclusive claim (its 95% interval straddles the bound) fails the assertion too, saying so:
    a regression test needs an answer, so give more prompts (``n`` in [method]) or a bound further away.

    ``model`` and ``task`` (objects or specs) override the file's; ``circuit`` is checked instead of one
    discovered with the file's settings.
    """
    given = from_json(circuit) if isinstance(circuit, (str, Path)) else circuit
    report = check(path, model=model, task=task, circuit=given, device=device)
    if report.outcome == "inconclusive":
        raise AssertionError("hypothesis inconclusive (no claim fails, but some 95% intervals straddle their bound; more "
                             "prompts or a bound further from the value would settle them):\n" + report.text())
    if not report.passed:
        raise AssertionError("hypothesis failed:\n" + report.text())
    return report
