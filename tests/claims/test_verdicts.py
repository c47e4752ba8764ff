"""Verdicts from intervals: pass, fail and inconclusive against hand-worked cases and planted ground truth."""

import json
import math
from dataclasses import replace

import pytest
import torch

from pathpatch.claims.attention import attention_to
from pathpatch.claims.checks import Context, check_claims
from pathpatch.claims.hypotheses import Claim, Hypothesis, parse_hypothesis
from pathpatch.claims.neurons import pearson
from pathpatch.claims.verdicts import bootstrap, judge, prompts_to_settle
from pathpatch.cli import main
from pathpatch.errors import InputError
from pathpatch.models import build_task, load_model
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.graph import ComputeGraph


@pytest.mark.parametrize("op, bound, value, low, high, verdict", [
    (">=", 0.0, 0.13, -0.054, 0.283, "inconclusive"),  # passed on its point estimate before intervals were read
    (">=", 0.0, 0.13, 0.02, 0.283, "pass"),
    (">=", 0.5, 0.13, 0.02, 0.283, "fail"),
    ("<=", 0.05, -0.097, -0.12, -0.07, "pass"),  # signed: a negative value is below any positive bound
    ("|x|<=", 0.05, -0.097, -0.12, -0.07, "fail"),  # negligible it is not
    ("|x|<=", 0.05, 0.01, -0.02, 0.04, "pass"),
    ("|x|<=", 0.05, 0.03, -0.02, 0.07, "inconclusive"),
    ("|x|>=", 0.2, -0.5, -0.6, -0.4, "pass"),
    ("|x|>=", 0.2, 0.0, -0.1, 0.1, "fail"),
    ("|x|>=", 0.2, 0.15, 0.1, 0.3, "inconclusive"),
    ("<=", 1.0, 0.5, 0.5, 0.5, "pass"),  # read off the weights: a zero-width interval decides outright
    (">=", 0.0, 0.1, math.nan, math.nan, "inconclusive"),  # an undefined interval decides nothing
])
def test_a_verdict_reads_the_whole_interval(op, bound, value, low, high, verdict):
    assert judge(op, bound, value, low, high) == verdict


def test_prompts_to_settle_scales_the_half_width_as_one_over_sqrt_n():
    # value 0.13, half-width 0.1685 at n = 32: the bound 0 leaves the interval at n * (0.1685 / 0.13)^2
    assert prompts_to_settle(">=", 0.0, 0.13, -0.054, 0.283, 32) == math.ceil(32 * (0.1685 / 0.13) ** 2)
    # and the premise, measured: a bootstrap interval of a mean over 4n prompts is about half as wide as over n
    g = torch.Generator().manual_seed(0)
    data = torch.randn(4096, generator=g, dtype=torch.float64)
    widths = []
    for n in (256, 1024):
        x = data[:n]
        low, high = bootstrap(lambda idx: float(x[idx].mean()), n, 400, 0)
        widths.append(high - low)
    assert widths[0] / widths[1] == pytest.approx(2.0, rel=0.2)


def test_a_statistic_undefined_in_some_resample_leaves_the_interval_undefined():
    x = torch.tensor([1.0, 1.0, 1.0, 2.0])
    assert bootstrap(lambda idx: pearson(x[idx], x[idx]), 4, 50, 0) != bootstrap(lambda idx: 0.0, 4, 50, 0)
    assert all(math.isnan(v) for v in bootstrap(lambda idx: pearson(x[idx], x[idx]), 4, 50, 0))
    assert math.isnan(pearson(torch.ones(5), torch.arange(5.0)))  # a constant has no correlation, not 0


def test_attention_with_no_target_is_undefined_not_zero():
    pattern = torch.full((2, 3, 3), 1 / 3)  # [batch dest src]
    mask = torch.zeros(2, 3, 3, dtype=torch.bool)
    mask[0, :, 1] = True  # prompt 0 has a target at every destination; prompt 1 none
    mass = attention_to(pattern, torch.arange(3), mask)
    assert mass[0] == pytest.approx(1 / 3) and math.isnan(mass[1])


@pytest.fixture(scope="module")
def negative():
    model = load_model("planted-negative")
    task = build_task("planted-negative", n=16, seed=0)
    graph = ComputeGraph.from_model(model)
    return Context(model, task, None, graph, PatchConfig(direction="noise"), 20, 0)


def one(ctx: Context, **params) -> dict:
    kind = params.pop("kind")
    return check_claims(Hypothesis("h", "m", "t", {}, (Claim("c", kind, params),)), ctx).iloc[0].to_dict()


def test_negative_copy_is_a_strength_on_a_planted_negative_copy_head(negative):
    """planted-negative: L1H1's OV circuit is -I on the tokens (strength 1), L1H0's is +I (strength -1)."""
    suppressor = one(negative, kind="head_role", head="L1H1", role="negative_copy", min=0.3)
    assert suppressor["value"] == pytest.approx(1.0, abs=1e-4) and suppressor["verdict"] == "pass"
    copier = one(negative, kind="head_role", head="L1H0", role="negative_copy", min=0.3)
    assert copier["value"] == pytest.approx(-1.0, abs=1e-4) and copier["verdict"] == "fail"
    with pytest.raises(InputError, match="strength"):
        Claim("c", "head_role", {"head": "L1H0", "role": "negative_copy", "min": -0.3})


def test_a_gap_of_zero_is_refused_wherever_effects_divide_by_it(negative):
    same = replace(negative.task, corrupt=negative.task.clean)
    ctx = Context(negative.model, same, None, negative.graph, negative.config, 20, 0)
    with pytest.raises(InputError, match="same metric"):
        one(ctx, kind="effect", edge="L1H0->logits", min=0.5)


@pytest.mark.parametrize("params, message", [
    ({"kind": "neuron", "layer": 0, "neuron": 1, "correlates_with": "x", "min": 1.5}, "out of range"),
    ({"kind": "forced_attention", "heads": ["L0H0"], "min": 5.0}, "out of range"),
    ({"kind": "virtual_ov", "heads": ["L0H0"], "max": 2.0}, "out of range"),
    ({"kind": "head_role", "head": "L0H0", "role": "previous_token", "min": 0.0}, "out of range"),
    ({"kind": "compare", "a": "L0H0", "b": "L0H0"}, "beats itself"),
    ({"kind": "effect", "edge": "L0H0->L1H0.v", "abs_max": -0.1}, "abs_max = -0.1"),
    ({"kind": "effect", "edge": "L0H0->L1H0.v", "min": 0.1, "abs_max": 0.2}, "exactly one bound"),
    ({"kind": "effect", "edge": "L0H0->L1H0.v"}, "exactly one bound"),
])
def test_bounds_that_cannot_say_anything_are_refused_from_files_and_the_api(params, message):
    with pytest.raises(InputError, match=message):
        parse_hypothesis({"model": "permute", "task": "permute", "claim": [params]}, "h")
    kind = params.pop("kind")
    with pytest.raises(InputError, match=message):
        Claim("c", kind, params)


def write(tmp_path, claim: str, method: str = "n = 16\nbootstrap = 50\n") -> str:
    path = tmp_path / "h.toml"
    path.write_text(f'model = "permute"\ntask = "permute"\n[method]\n{method}[[claim]]\n{claim}\n')
    return str(path)


def test_check_exits_4_when_nothing_fails_but_something_is_inconclusive(tmp_path, capsys):
    from pathpatch.testing import assert_hypothesis

    assert main(["check", write(tmp_path, 'kind = "head_role"\nhead = "L0H0"\nrole = "previous_token"\nreport = true'),
                 "--out", str(tmp_path / "r")]) == 0
    value = json.loads((tmp_path / "r" / "check.json").read_text())["claims"][0]["value"]
    path = write(tmp_path, f'kind = "head_role"\nhead = "L0H0"\nrole = "previous_token"\nmin = {value}')  # the bound inside the interval
    assert main(["check", path, "--out", str(tmp_path / "r")]) == 4
    report = json.loads((tmp_path / "r" / "check.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in check.json"))
    assert report["verdict"] == "inconclusive" and report["claims"][0]["verdict"] == "inconclusive"
    assert "inconclusive" in (tmp_path / "r" / "check.md").read_text() and "inconclusive" in (tmp_path / "r" / "report.html").read_text()
    with pytest.raises(AssertionError, match="inconclusive"):
        assert_hypothesis(path)


def test_check_json_is_strict_json_with_null_for_what_has_no_bound(tmp_path):
    assert main(["check", write(tmp_path, 'kind = "faithfulness"\nreport = true'), "--out", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "check.json").read_text()
    claim = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in check.json"))["claims"][0]
    assert claim["threshold"] is None and claim["verdict"] == "report" and "NaN" not in text
    assert "nan" not in (tmp_path / "r" / "check.md").read_text()


def test_a_circuit_found_with_other_settings_is_refused_unless_forced(tmp_path, capsys):
    assert main(["discover", "--model", "permute", "--direction", "denoise", "--n", "16", "--no-cross-check", "--out", str(tmp_path / "d")]) == 0
    path = write(tmp_path, 'kind = "faithfulness"\nmin = 0.5')
    circuit = str(tmp_path / "d" / "circuit.json")
    assert main(["check", path, "--circuit", circuit]) == 2
    assert "direction 'denoise' (the file pins 'noise')" in capsys.readouterr().err
    main(["check", path, "--circuit", circuit, "--force", "--out", str(tmp_path / "c")])
    assert "the circuit was found with direction 'denoise'" in (tmp_path / "c" / "check.md").read_text()


def test_explain_lists_one_kinds_keys_and_what_each_attention_rule_picks(capsys):
    from pathpatch.claims.claim_keys import ATTENTION_RULES, CLAIM_KEYS
    from pathpatch.claims.claim_reference import ATTENTION_RULE_MEANINGS

    assert set(ATTENTION_RULE_MEANINGS) == set(ATTENTION_RULES)
    assert main(["check", "--explain", "head_role"]) == 0
    out = capsys.readouterr().out
    assert all(f"    {key}:" in out for key in CLAIM_KEYS["head_role"][1]) and "mismatch: positions where the clean and corrupt" in out
    assert main(["check", "--explain", "telepathy"]) == 2 and "unknown claim kind" in capsys.readouterr().err


@pytest.mark.parametrize("claim, message", [
    ('kind = "head_role"\nhead = "L0H0"\nrole = "attends_to"\ntoken = 100000\nmin = 0.5', "outside the model's vocabulary"),
    ('kind = "forced_attention"\nheads = ["L0H0"]\noffset = -1\nmin = 0.5', "a causal head cannot see"),
    ('kind = "forced_attention"\nheads = ["L0H0"]\noffset = 40\nmin = 0.5', "the prompt lacks"),
])
def test_claims_no_prompt_can_measure_are_bad_input(tmp_path, capsys, claim, message):
    assert main(["check", write(tmp_path, claim)]) == 2
    assert message in capsys.readouterr().err


def test_patch_refuses_more_prompts_than_the_limit(tmp_path, capsys):
    assert main(["patch", "--model", "permute", "--n", "200000000", "--out", str(tmp_path / "p")]) == 2
    assert "--n 200000000" in capsys.readouterr().err


@pytest.mark.parametrize("kind, parts, expected", [
    ("all", ["pass", "pass"], "pass"), ("all", ["pass", "inconclusive"], "inconclusive"), ("all", ["fail", "inconclusive"], "fail"),
    ("any", ["fail", "pass"], "pass"), ("any", ["fail", "inconclusive"], "inconclusive"), ("any", ["fail", "fail"], "fail"),
])
def test_a_group_verdict_follows_logic_over_its_parts(kind, parts, expected):
    from pathpatch.claims.verdicts import ClaimResult, group_result

    results = [ClaimResult(f"p{i}", "effect", 0.5, ">=", 0.4, 0.3, 0.7, v, "", 10) for i, v in enumerate(parts)]
    group = group_result("g", kind, results)
    assert group.verdict == expected and group.value == parts.count("pass") / len(parts)
