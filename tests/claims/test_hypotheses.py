"""Hypothesis files: parsing errors, the seed hypotheses pass, false claims fail, CLI exit codes."""

from pathlib import Path

import pytest
import torch

from pathpatch.claims.hypotheses import load_hypothesis, parse_hypothesis
from pathpatch.cli import main
from pathpatch.testing import assert_hypothesis

ROOT = Path(__file__).resolve().parents[2]
SEED_FILES = ["permute", "sorted-list", "trigrams", "recurrence"]


def minimal(**claim):
    return {"model": "permute", "task": "permute", "claim": [claim]}


@pytest.mark.parametrize(
    "data, message",
    [
        ({"model": "permute", "task": "permute"}, "has no claims"),
        (minimal(kind="telepathy"), "unknown claim kind 'telepathy'"),
        (minimal(kind="effect", edge="L0H0->L1H0.v"), r"give exactly one bound of min, max, abs_min, abs_max"),
        (minimal(kind="effect", edge="L0H0->L1H0.v", min=0.5, colour="red"), r"unknown keys \['colour'\]"),
        (minimal(kind="effect", min=0.5), "exactly one of edge"),
        (minimal(kind="faithfulness", min=1.5), "out of range"),
        (minimal(kind="head_role", head="L0H0", role="previous_token", min=2.0), "out of range"),
        (minimal(kind="head_role", head="L0H0", role="poet", min=0.5), "unknown role 'poet'"),
        ({**minimal(kind="faithfulness", min=0.5), "method": {"scoring": "magic"}}, "scoring 'magic'"),
        ({**minimal(kind="faithfulness", min=0.5), "method": {"n": 0}}, "n = 0"),
        ({**minimal(kind="faithfulness", min=0.5), "colour": 1}, "unknown top-level keys"),
    ],
)
def test_malformed_hypotheses_are_explained(data, message):
    with pytest.raises(ValueError, match=message):
        parse_hypothesis(data, "h")


def test_every_shipped_hypothesis_file_parses():
    files = sorted((ROOT / "hypotheses").glob("*.toml"))
    assert {f.stem for f in files} >= {*SEED_FILES, "weekday"}
    for path in files:
        assert load_hypothesis(path).claims


def test_invalid_toml_is_explained(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("model = permute\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_hypothesis(bad)


@pytest.mark.parametrize("name", SEED_FILES)
def test_seed_hypotheses_pass_with_default_settings(name):
    report = assert_hypothesis(ROOT / "hypotheses" / f"{name}.toml")
    judged = report.table[report.table["op"] != "report"]
    at_least, at_most = judged[judged["op"] == ">="], judged[judged["op"] == "<="]
    assert (at_least["ci_low"] >= at_least["threshold"]).all() and (at_most["ci_high"] <= at_most["threshold"]).all()
    negligible = judged[judged["op"] == "|x|<="]
    assert (negligible["ci_low"] >= -negligible["threshold"]).all() and (negligible["ci_high"] <= negligible["threshold"]).all()


def test_a_false_claim_fails_with_exit_code_1(tmp_path, capsys):
    path = tmp_path / "false.toml"
    path.write_text('model = "permute"\ntask = "permute"\n[method]\nn = 16\nbootstrap = 20\n'
                    '[[claim]]\nname = "L0H0 is a previous-token head"\nkind = "head_role"\nhead = "L0H0"\nrole = "previous_token"\nmin = 0.9\n'
                    '[[claim]]\nkind = "path"\nnodes = ["embed", "L1H0.q", "L1H0", "logits"]\nmin_effect = 0.5\n')
    assert main(["check", str(path), "--out", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "not in circuit: embed->L1H0.q" in out
    assert (tmp_path / "out" / "check.json").exists()
    assert "#d95f02" in (tmp_path / "out" / "circuit.dot").read_text(), "the failed hop is highlighted"


@pytest.mark.parametrize(
    "text, message",
    [
        ('model = "permute"\ntask = "permute"\n[[claim]]\nkind = "effect"\nedge = "L0H0->L7H0.v"\nmin = 0.1\n', "Unknown node 'L7H0.v'"),
        ('model = "permute"\ntask = "permute"\n[[claim]]\nkind = "nope"\n', "unknown claim kind"),
        ("model = [", "not valid TOML"),
    ],
)
def test_bad_hypothesis_input_exits_2(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["check", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_baseline_reports_changes(tmp_path, capsys):
    path = ROOT / "hypotheses" / "permute.toml"
    assert main(["check", str(path), "--out", str(tmp_path)]) == 0
    assert main(["check", str(path), "--baseline", str(tmp_path / "check.json")]) == 0
    assert "changes since baseline" in capsys.readouterr().out


def run_claims(tmp_path, claims: str, model: str = "permute") -> "object":
    from pathpatch.pipeline import check

    path = tmp_path / "h.toml"
    path.write_text(f'model = "{model}"\ntask = "{model}"\n[method]\nn = 16\nbootstrap = 20\n' + claims)
    return check(load_hypothesis(path)).table.set_index("name")


def test_weight_and_attention_claims_measure_what_they_say(tmp_path):
    table = run_claims(tmp_path, """
[[claim]]
name = "v"
kind = "composition"
src = "L0H0"
dest = "L1H0"
type = "v"
min = 0.5
[[claim]]
name = "mid"
kind = "head_role"
head = "L1H0"
role = "attends_to"
token = 51
max = 0.5
[[claim]]
name = "induction"
kind = "head_role"
head = "L1H0"
role = "induction"
report = true
[[claim]]
name = "offset"
kind = "head_role"
head = "L1H0"
role = "attends_to"
offset = 3
positions = "read"
min = 0.5
""")
    from pathpatch.claims.weights import composition_score
    from pathpatch.models import load_model

    model = load_model("permute")
    expected = composition_score(model, *(ComputeGraphNodes.get(model, n) for n in ("L0H0", "L1H0")), "v")
    assert table.loc["v", "value"] == pytest.approx(expected) and not table.loc["v", "passed"]
    assert 0 <= table.loc["mid", "value"] <= 1 and table.loc["mid", "passed"]
    assert 0 <= table.loc["induction", "value"] <= 1
    from pathpatch.models import build_task

    task = build_task("permute", n=16, seed=0, corruption="values")
    _, cache = model.run_with_cache(task.clean)
    pattern = cache["blocks.1.attn.hook_pattern"][:, 0]
    expected = torch.stack([pattern[:, p, p - 3] for p in (8, 9, 10)], -1).mean()
    assert table.loc["offset", "value"] == pytest.approx(expected.item(), abs=1e-6)
    assert table.loc["offset", "verdict"] != ("fail" if expected.item() >= 0.5 else "pass")  # never against the full-sample value


class ComputeGraphNodes:
    @staticmethod
    def get(model, name):
        from pathpatch.patch.graph import ComputeGraph

        return ComputeGraph.from_model(model).node(name)


@pytest.mark.parametrize(
    "method, message",
    [
        ("threshold = 20.0", "out of range"),
        ("threshold = 9.0", "circuit is empty"),
        ('granularity = "pos"', "use \"edge\""),
        ('metric = "f1"', "metric 'f1'"),
    ],
)
def test_bad_methods_and_empty_circuits_exit_2(tmp_path, capsys, method, message):
    path = tmp_path / "h.toml"
    path.write_text(f'model = "permute"\ntask = "permute"\n[method]\nn = 8\n{method}\n[[claim]]\nkind = "faithfulness"\nmin = 0.5\n')
    assert main(["check", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_pinned_metric_is_used_and_recorded(tmp_path):
    path = tmp_path / "h.toml"
    path.write_text('model = "permute"\ntask = "permute"\n[method]\nn = 16\nbootstrap = 20\nmetric = "kl"\n'
                    '[[claim]]\nkind = "faithfulness"\nmin = 0.9\n')
    from pathpatch.pipeline import check

    report = check(load_hypothesis(path))
    assert report.passed and report.to_dict()["method"]["metric"] == "kl"
    assert report.circuit.graph.graph["metric"] == "kl"
    assert "| faithfulness |" in report.markdown()


def test_check_runs_on_a_hugging_face_directory(tiny_gpt2_dir, tmp_path, capsys):
    path = tmp_path / "weekday.toml"
    path.write_text('model = "gpt2"\ntask = "weekday"\n[method]\nn = 14\nbootstrap = 10\n'
                    '[[claim]]\nkind = "effect"\nnode = "L1H0"\nreport = true\n')
    assert main(["check", str(path), "--model", str(tiny_gpt2_dir)]) == 0  # a measured value, recorded: no verdict to pass
    assert "PASS (1 report)" in capsys.readouterr().out
