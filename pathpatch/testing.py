"""A pytest helper: assert that a hypothesis file holds, inside a user's own test suite.

    from pathpatch.testing import assert_hypothesis

    def test_my_circuit():
        assert_hypothesis("circuits/my_model.toml")                       # the file's own model and task
        assert_hypothesis("circuits/my_model.toml", model=my_model, task=my_task)   # or objects
"""

from pathlib import Path

import torch

from pathpatch.graphs.circuit import Circuit, from_json
from pathpatch.models.tasks import AnyTask
from pathpatch.pipeline import CheckReport, check


def assert_hypothesis(
    path: "str | Path",
    circuit: "str | Path | Circuit | None" = None,
    device: str = "cpu",
    model: "str | Path | torch.nn.Module | None" = None,
    task: "str | Path | AnyTask | None" = None,
) -> CheckReport:
    """Check every claim of the file; raise AssertionError listing the failed claims. Returns the report.

    ``model`` and ``task`` (objects or specs) override the file's; ``circuit`` is checked instead of one
    discovered with the file's settings.
    """
    given = from_json(circuit) if isinstance(circuit, (str, Path)) else circuit
    report = check(path, model=model, task=task, circuit=given, device=device)
    if not report.passed:
        raise AssertionError("hypothesis failed:\n" + report.text())
    return report
