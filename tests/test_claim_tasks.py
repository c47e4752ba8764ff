"""Hypothesis files with several named tasks: a claim names its task, a group quantifies over tasks."""

import json

import pytest

from pathpatch.cli import main
from pathpatch.models import build_task, load_model
from pathpatch.patch.edges import patch_edges

FACTORIES = """from pathpatch.models import build_task

def first(n, seed):
    return build_task("permute", n=n, seed=seed + 1, corruption="values")

def second(n, seed):
    return build_task("permute", n=n, seed=seed + 2, corruption="values")
"""


def write(tmp_path, claims: str) -> str:
    (tmp_path / "tasks.py").write_text(FACTORIES)
    (tmp_path / "h.toml").write_text('model = "permute"\ntask = "permute"\n[method]\nn = 16\nbootstrap = 50\n'
                                     '[tasks]\nfirst = "tasks.py:first"\nsecond = "tasks.py:second"\n' + claims)
    return str(tmp_path / "h.toml")


def test_a_claim_measures_on_the_task_it_names(tmp_path, capsys):
    path = write(tmp_path, '[[claim]]\nname = "on second"\nkind = "effect"\nedge = "L0H0->L1H0.v"\ntask = "second"\nreport = true\n')
    assert main(["check", path, "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    value = json.loads((tmp_path / "out" / "check.json").read_text())["claims"][0]["value"]
    task = build_task("permute", n=16, seed=2, corruption="values")
    expected = float(patch_edges(load_model("permute"), task, ["L0H0->L1H0.v"])["normalized"].iloc[0])
    assert value == pytest.approx(expected, abs=1e-6)


def test_for_every_task_and_for_some_task(tmp_path, capsys):
    every = ('[[claim]]\nname = "V path on every task"\nkind = "all"\ntasks = ["first", "second"]\n'
             'claim = {kind = "effect", edge = "L0H0->L1H0.v", min = 0.5}\n')
    assert main(["check", write(tmp_path, every), "--out", str(tmp_path / "a")]) == 0, capsys.readouterr().err
    row = json.loads((tmp_path / "a" / "check.json").read_text())["claims"][0]
    assert row["verdict"] == "pass" and "effect on first: pass" in row["detail"] and "effect on second: pass" in row["detail"]
    none = ('[[claim]]\nkind = "any"\ntasks = ["first", "second"]\nclaim = {kind = "effect", edge = "embed->logits", min = 0.5}\n')
    assert main(["check", write(tmp_path, none), "--out", str(tmp_path / "b")]) == 1


@pytest.mark.parametrize("claims, named", [
    ('[[claim]]\nkind = "effect"\nedge = "embed->logits"\ntask = "third"\nmax = 0.5\n', "claims name tasks third that [tasks] does not define"),
    ('[[claim]]\nkind = "all"\ntasks = ["first"]\nclaim = {kind = "effect", edge = "embed->logits", max = 0.5}\n', "at least two task names"),
    ('[[claim]]\nkind = "any"\nclaims = [{kind = "effect", edge = "embed->logits", report = true}, {kind = "metric", min = 0}]\n',
     "cannot count toward any"),
])
def test_a_malformed_task_claim_exits_2_naming_it(tmp_path, capsys, claims, named):
    assert main(["check", write(tmp_path, claims)]) == 2
    assert named in capsys.readouterr().err


def test_the_readme_example_of_tasks_and_groups_is_a_valid_hypothesis_file():
    import tomllib
    from pathlib import Path

    from pathpatch.claims.hypotheses import flat_kinds, named_tasks, parse_hypothesis

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b.split("```")[0] for b in readme.split("```toml\n")[1:] if "[tasks]" in b)
    hypothesis = parse_hypothesis({"model": "m", "task": "t", **tomllib.loads(block)}, "readme")
    assert named_tasks(hypothesis.claims) == {"carry", "no_carry"} and flat_kinds(hypothesis.claims) == {"rank", "effect"}
