"""The user's own code and flags: a factory's failure is reported as the factory's (exit 2), never as a bug."""

import pytest

from pathpatch.cli import main

FACTORIES = {
    "raises": ("def build():\n    raise RuntimeError('weights missing')\n", "your model factory", "raised RuntimeError: weights missing (f.py:2)"),
    "syntax": ("def build(:\n    pass\n", "your model factory", "raised SyntaxError"),
    "exits": ("import sys\n\ndef build():\n    sys.exit(0)\n", "your model factory", "called sys.exit(0)"),
    "exits on import": ("import sys\nsys.exit(3)\n\ndef build():\n    pass\n", "your model factory", "called sys.exit(3)"),
}


@pytest.mark.parametrize("source, who, what", FACTORIES.values(), ids=list(FACTORIES))
def test_a_failing_factory_is_reported_as_the_factorys_with_exit_2(tmp_path, capsys, monkeypatch, source, who, what):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.py").write_text(source)
    assert main(["discover", "--model", "f.py:build", "--task", "permute", "--out", "out"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1 and who in lines[0] and what in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_a_failing_task_factory_is_the_factorys_too(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.py").write_text("def make(n, seed):\n    return {}['missing']\n")
    assert main(["discover", "--model", "permute", "--task", "t.py:make", "--out", "out"]) == 2
    assert "your task factory" in capsys.readouterr().err


@pytest.mark.parametrize("workers", ["0", "-2", "100000", "two"])
def test_worker_counts_outside_the_machine_are_refused(workers, capsys):
    with pytest.raises(SystemExit) as stop:
        main([f"--workers={workers}", "discover", "--model", "permute", "--out", "x"])
    assert stop.value.code == 2 and "--workers" in capsys.readouterr().err


KILLS_RANK_1 = """import os, signal
from pathpatch.models.zoo import build_task

def make(n, seed):
    if os.environ.get("RANK") == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    return build_task("permute", n=n, seed=seed)
"""
TOO_LONG = """import torch
from pathpatch.task.task import Task

def make(n, seed):
    tokens = torch.zeros(n, 40, dtype=torch.long)
    return Task(name="long", clean=tokens, corrupt=tokens + 1, answers=tokens[:, :1], wrong_answers=tokens[:, :1] + 1,
                positions=torch.tensor([-1]))
"""


@pytest.mark.parametrize("source, code, what", [(KILLS_RANK_1, 137, "rank 1 of 2 was killed by SIGKILL"),
                                                (TOO_LONG, 2, "inputs have 40 positions but the model's n_ctx is")],
                         ids=["killed rank", "bad input on every rank"])
@pytest.mark.slow  # two process groups per case
def test_a_failed_worker_run_ends_in_one_line_and_no_output(tmp_path, source, code, what):
    """Under --workers a failure is one line naming the first failing rank's cause, never torch.distributed's traceback."""
    import subprocess
    import sys

    (tmp_path / "t.py").write_text(source)
    run = subprocess.run([sys.executable, "-m", "pathpatch", "--workers", "2", "discover", "--model", "permute", "--task", "t.py:make",
                          "--n", "8", "--out", "out"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    errors = [line for line in run.stderr.splitlines() if "error" in line.lower()]
    assert run.returncode == code and len(errors) == 1 and what in errors[0], run.stderr[-3000:]
    assert "Traceback" not in run.stderr and run.stderr.count("running task factory") == 1, run.stderr[-3000:]
    assert not (tmp_path / "out").exists()
