"""Faults: interrupts, kills, full disks and failed renames never leave a half-written output folder;
training never replaces good weights; custom metrics and inputs never give a silently wrong number.

Signals are raised inside the process at the moment a file is being written (``signal.raise_signal``
from a patched writer), so each test hits the same instant every run; only SIGKILL, which no process
can handle, runs in a subprocess (a small one that does not import TransformerLens).
"""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pathpatch import pipeline
from pathpatch.cli import main
from pathpatch.files import MARKER, clean_scratch, output_folder
from pathpatch.models import Task, build_task, load_model
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.edges import patch_edges
from pathpatch.pipeline import results

DISCOVER = ["discover", "--model", "permute", "--n", "8", "--no-cross-check"]  # these tests are about writing files


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` by name, with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def scratch(parent: Path) -> list[str]:
    """Hidden scratch folders pathpatch left in ``parent``."""
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


@pytest.fixture(scope="module")
def one_run(tmp_path_factory) -> Path:
    """One complete run of ``discover``, made once for the module."""
    out = tmp_path_factory.mktemp("earlier") / "run"
    assert main([*DISCOVER, "--top-k", "3", "--out", str(out)]) == 0
    return out


@pytest.fixture()
def earlier(one_run, tmp_path):
    """A folder holding a complete earlier run (a copy of ``one_run``, marker included), and its snapshot."""
    out = tmp_path / "run"
    shutil.copytree(one_run, out)
    return out, snapshot(out)


def interrupt_while_writing(monkeypatch, signum: int) -> None:
    """Deliver ``signum`` to this process while the diagram is written (after the other files)."""
    def write_diagram(*args, **kwargs):
        # Ctrl-C as at a terminal: a runner started in the background (or an xdist worker) may have SIGINT ignored.
        previous = signal.signal(signum, signal.default_int_handler) if signum == signal.SIGINT else None
        try:
            signal.raise_signal(signum)
        finally:
            if previous is not None:
                signal.signal(signum, previous)
        raise AssertionError("the signal should have stopped the run")

    monkeypatch.setattr(results, "write_diagram", write_diagram)


@pytest.mark.parametrize("signum, code, said", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_during_the_write_leaves_the_earlier_run_and_no_scratch(signum, code, said, earlier, monkeypatch, capsys):
    out, before = earlier
    interrupt_while_writing(monkeypatch, signum)
    assert main([*DISCOVER, "--out", str(out)]) == code
    err = capsys.readouterr().err
    assert err.strip() == f"pathpatch discover: error: {said}{' (SIGTERM)' if code == 143 else ''}; the output folder was left as it was"
    assert snapshot(out) == before and scratch(out.parent) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "main restores the SIGTERM handler"


def test_an_internal_error_during_the_write_exits_3_in_one_line_and_changes_nothing(earlier, monkeypatch, capsys):
    out, before = earlier
    monkeypatch.setattr(results, "write_diagram", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom\nsecond line")))
    assert main([*DISCOVER, "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected RuntimeError: boom; " in err and "--debug" in err and "Traceback" not in err
    assert snapshot(out) == before and scratch(out.parent) == []
    assert main(["--debug", *DISCOVER, "--out", str(out)]) == 3, "--debug shows the traceback but keeps the exit code"
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err and err.strip().splitlines()[-1].startswith("pathpatch discover: error: unexpected")
    main([*DISCOVER, "--out", str(out), "--verbose"])
    assert "Traceback" in capsys.readouterr().err


KILLED_WRITER = """
import sys, time
from pathpatch.files import output_folder
with output_folder(sys.argv[1], "test", "0") as tmp:
    (tmp / "scores.csv").write_text("half")
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_sigkill_during_the_write_leaves_the_earlier_run_and_the_next_run_removes_the_scratch(earlier, capsys):
    out, before = earlier
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "writing\n"
    child.kill()
    child.wait()
    left = scratch(out.parent)
    assert len(left) == 1 and left[0].startswith(f".run.tmp-{child.pid}-") and (out.parent / left[0] / "scores.csv").exists()
    assert snapshot(out) == before
    assert main([*DISCOVER, "--out", str(out)]) == 0
    assert scratch(out.parent) == [] and snapshot(out) != before and (out / MARKER).exists()


def test_a_kill_between_the_two_renames_brings_the_earlier_run_back(earlier):
    out, before = earlier
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    moved = out.parent / f".run.old-{dead.pid}-abcd"
    out.rename(moved)  # where a kill after the first rename leaves it
    clean_scratch(out)
    assert snapshot(out) == before and scratch(out.parent) == []


def test_a_full_disk_exits_2_naming_the_folder_and_changes_nothing(earlier, capsys):
    out, before = earlier
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1500, hard))  # circuit.json is larger: its write fails with EFBIG
    try:
        code = main([*DISCOVER, "--out", str(out)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"could not write the output folder {out} (File too large); it was left as it was" in err
    assert snapshot(out) == before and scratch(out.parent) == []


def test_a_failed_rename_puts_the_earlier_run_back(earlier, monkeypatch, capsys):
    out, before = earlier
    rename = os.rename

    def refuse_new(src, dst):
        if ".tmp-" in str(src):
            raise PermissionError(13, "Permission denied")
        rename(src, dst)

    monkeypatch.setattr(os, "rename", refuse_new)
    assert main([*DISCOVER, "--out", str(out)]) == 2
    assert "could not write the output folder" in capsys.readouterr().err
    monkeypatch.undo()
    assert snapshot(out) == before and scratch(out.parent) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_parent_exits_2(tmp_path, capsys):
    tmp_path.chmod(0o555)
    try:
        assert main([*DISCOVER, "--out", str(tmp_path / "run")]) == 2
    finally:
        tmp_path.chmod(0o755)
    assert "cannot create the output folder" in capsys.readouterr().err


def test_an_output_folder_inside_a_file_exits_2(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main([*DISCOVER, "--out", str(tmp_path / "file" / "run")]) == 2
    assert f"cannot create the output folder {tmp_path / 'file' / 'run'}" in capsys.readouterr().err
    assert main([*DISCOVER, "--out", str(tmp_path / "file")]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err


def test_foreign_files_are_refused_then_kept_with_force(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    assert main([*DISCOVER, "--out", str(out)]) == 2
    assert "holds files pathpatch did not write (notes.txt)" in capsys.readouterr().err and not (out / "circuit.json").exists()
    assert main([*DISCOVER, "--out", str(out), "--force"]) == 0
    assert (out / "notes.txt").read_text() == "my notes" and (out / "circuit.json").exists()
    assert main([*DISCOVER, "--out", str(out), "--force"]) == 0, "a second forced run replaces its own files and keeps the notes"
    assert (out / "notes.txt").read_text() == "my notes" and scratch(tmp_path) == []


def test_the_working_directory_is_refused_as_a_folder_to_swap(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*DISCOVER, "--out", "."]) == 2
    assert "is the working directory" in capsys.readouterr().err


def small_hypothesis(folder: Path) -> Path:
    """The shipped permute hypothesis on fewer prompts and resamples."""
    text = (Path(__file__).resolve().parents[1] / "hypotheses" / "permute.toml").read_text()
    path = folder / "permute.toml"
    path.write_text(text.replace("n = 64", "n = 16").replace("bootstrap = 200", "bootstrap = 10"))
    return path


def test_make_demo_reruns_nested_check_and_drawn_files_included(tmp_path, monkeypatch, capsys):
    """discover into out/permute, check into out/permute/check, draw into out/permute: then all of it again."""
    monkeypatch.chdir(tmp_path)
    hypothesis = small_hypothesis(tmp_path)
    for _ in range(2):
        assert main(["discover", "--model", "permute", "--n", "16", "--out", "out/permute"]) == 0
        assert main(["check", str(hypothesis), "--circuit", "out/permute/circuit.json", "--out", "out/permute/check"]) == 0
        assert main(["draw", "out/permute/circuit.json", "-o", "out/permute/circuit.dot"]) == 0
    assert {"check.json", "check.md", "circuit.json", MARKER} <= set(os.listdir("out/permute/check"))
    assert "circuit.dot" in json.loads(Path("out/permute", MARKER).read_text())["files"]
    assert scratch(tmp_path / "out") == [] and scratch(tmp_path / "out" / "permute") == []


def test_library_writes_are_folders_too(tmp_path):
    with output_folder(tmp_path / "lib", "test", "0") as tmp:
        (tmp / "a.txt").write_text("a")
    assert sorted(os.listdir(tmp_path / "lib")) == [MARKER, "a.txt"]
    assert oct((tmp_path / "lib").stat().st_mode & 0o777) == oct(0o777 & ~_umask()), "not mkdtemp's 0700"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_two_runs_with_one_seed_write_identical_files(tmp_path):
    for name in ("a", "b"):
        assert main([*DISCOVER, "--corruption", "resample", "--seed", "3", "--out", str(tmp_path / name)]) == 0
    for file in ("circuit.json", "scores.csv"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


def test_the_memory_estimate_refuses_a_run_that_cannot_fit(tmp_path, monkeypatch, capsys):
    from pathpatch.cli import arguments as cli

    model, task = load_model("permute"), build_task("permute", n=8)
    config = pipeline.DiscoverConfig(n=8)
    exact = cli.memory_estimate(model, task, config)
    assert exact == 4 * 8 * 2 * 3 * task.clean.shape[1] * model.cfg.d_model  # prompts x positions x d_model x 2 x 3 sources
    assert cli.memory_estimate(model, task, pipeline.DiscoverConfig(n=8, method="eap-ig", steps=20)) > 20 * exact
    monkeypatch.setattr(cli, "available_memory", lambda device: (exact - 1, "this machine has"))
    assert main([*DISCOVER, "--out", str(tmp_path / "run")]) == 2
    assert "8 prompts need about 0.0 GiB" in capsys.readouterr().err and not (tmp_path / "run").exists()


# --- training ------------------------------------------------------------------------------------------------------

def test_a_model_below_target_never_replaces_the_bundled_weights(tmp_path, capsys):
    from pathpatch.models.zoo import weights_dir

    for suffix in (".safetensors", ".json"):
        (tmp_path / f"permute{suffix}").write_bytes((weights_dir() / f"permute{suffix}").read_bytes())
    before = snapshot(tmp_path)
    assert main(["train", "permute", "--steps", "3", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "permute (written to" in err and "missed the target, so the earlier weights were kept" in err and err.count("\n") == 1
    after = snapshot(tmp_path)
    assert {k: after[k] for k in before} == before
    assert json.loads(after["permute.below-target.json"])["below_target"] is True and "permute.below-target.safetensors" in after


# --- silent wrong answers ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def permute():
    return load_model("permute"), build_task("permute", n=8, seed=0)


def test_a_closure_metric_sees_one_batch_at_a_time_and_scores_like_the_builtin(permute):
    model, task = permute
    right, wrong = task.answers, task.wrong_answers

    def closure_logit_diff(read):  # answers of the task's batch, from the closure
        return (read.gather(-1, right[..., None])[..., 0] - read.gather(-1, wrong[..., None])[..., 0]).mean(-1)

    custom = Task(task.name, task.clean, task.corrupt, task.answers, task.wrong_answers, task.positions, closure_logit_diff)
    builtin = patch_edges(model, task)
    ours = patch_edges(model, custom)
    assert torch.allclose(torch.tensor(ours["score"].values), torch.tensor(builtin["score"].values), atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64])
def test_a_metric_returning_bools_or_ints_is_refused(permute, dtype):
    model, task = permute
    custom = Task(task.name, task.clean, task.corrupt, task.answers, task.wrong_answers, task.positions,
                  lambda read: torch.ones(read.shape[0], dtype=dtype))
    with pytest.raises(ValueError, match=f"returned {dtype} values; it must return floats"):
        patch_edges(model, custom, ["L0H0->L1H0.v"])


def test_a_metric_that_turns_nan_on_patched_runs_is_an_error_naming_it(permute):
    model, task = permute
    calls = []

    def flaky(read):  # finite on the clean and corrupt runs, NaN once anything is patched
        calls.append(1)
        value = read[:, 0, 0] - read[:, 0, 1]
        return value if len(calls) <= 2 else value * float("nan")

    custom = Task(task.name, task.clean, task.corrupt, task.answers, task.wrong_answers, task.positions, flaky)
    with pytest.raises(ValueError, match="the metric 'flaky' returned NaN or inf for 8 of 8 prompt runs.*the metric made them"):
        patch_edges(model, custom, ["L0H0->L1H0.v"])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int16])
def test_narrow_integer_tokens_become_long(permute, dtype):
    model, task = permute
    narrow = Task(task.name, task.clean.to(dtype), task.corrupt.to(dtype), task.answers.to(dtype), task.wrong_answers.to(dtype),
                  task.positions.to(dtype))
    assert {narrow.clean.dtype, narrow.answers.dtype, narrow.positions.dtype} == {torch.long}
    assert patch_edges(model, narrow, ["L0H0->L1H0.v"])["score"].iloc[0] == patch_edges(model, task, ["L0H0->L1H0.v"])["score"].iloc[0]


def test_boolean_tokens_are_refused(permute):
    _, task = permute
    with pytest.raises(TypeError, match="clean is a torch.bool tensor; give token ids as torch.long"):
        Task(task.name, task.clean.bool(), task.corrupt.bool(), task.answers, task.wrong_answers, task.positions)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, -1])
def test_a_bad_memory_budget_is_refused(value):
    with pytest.raises(ValueError, match=r"max_memory=.*give a positive, finite budget in bytes"):
        PatchConfig(max_memory=value)


def test_a_memory_budget_that_is_text_is_refused():
    with pytest.raises((ValueError, TypeError), match="max_memory"):  # TypeError: the tests' runtime type checks see it first
        PatchConfig(max_memory="2GB")


def test_a_claim_measured_as_nan_exits_2_not_1(tmp_path, monkeypatch, capsys):
    hypothesis = small_hypothesis(tmp_path)
    report = pipeline.check(hypothesis)
    report.table.loc[0, "value"] = float("nan")
    monkeypatch.setattr(pipeline, "check", lambda *args, **kwargs: report)
    assert main(["check", str(hypothesis), "--out", str(tmp_path / "out")]) == 2
    assert f"claims ['{report.table['name'][0]}'] measured NaN" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_folder_written_before_markers_is_replaced_but_one_with_other_files_is_not(tmp_path, capsys):
    legacy = tmp_path / "old"
    (legacy / "check").mkdir(parents=True)
    for name in ("circuit.json", "scores.csv", "report.md", "check/check.json"):
        (legacy / name).write_text("from an older pathpatch")
    assert main([*DISCOVER, "--out", str(legacy)]) == 0
    assert not (legacy / "check").exists() and (legacy / MARKER).exists()
    (legacy / "data").mkdir()
    (legacy / "data" / "mine.csv").write_text("x")
    assert main([*DISCOVER, "--out", str(legacy)]) == 2
    assert "did not write (data)" in capsys.readouterr().err and (legacy / "data" / "mine.csv").exists()
