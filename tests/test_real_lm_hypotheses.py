"""The SmolLM2 hypothesis files pass on the real LM (document 001's weekday analysis, and IOI), and each claim
kind they use fails when its bound is moved past what the model does."""

from dataclasses import replace
from pathlib import Path

import pytest

from pathpatch import check
from pathpatch.claims.hypotheses import load_hypothesis

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["weekday-smollm2", "ioi-smollm2"])
def test_the_smollm2_hypothesis_file_passes(name, smollm2_model):
    report = check(ROOT / "hypotheses" / f"{name}.toml", model=smollm2_model)
    assert report.passed, report.text()
    assert set(report.table["kind"]) >= {"metric", "dla", "faithfulness"}


def test_a_negative_head_claim_on_a_positive_head_fails(smollm2_model):
    hypothesis = load_hypothesis(ROOT / "hypotheses" / "weekday-smollm2.toml")
    wrong = tuple(replace(c, params={**c.params, "node": "L23H3"}) for c in hypothesis.claims if c.params.get("node") == "L29H0")
    report = check(replace(hypothesis, claims=wrong), model=smollm2_model)
    assert not report.passed and report.table["value"].iloc[0] > 0.05
