"""What a long run owes its user: every attributed score kept, the exact re-check sized by --recheck, a memory
budget that is checked, checks that skip discovery they do not need, and verdicts kept when a check is stopped."""

import json

import pandas as pd
import pytest

from pathpatch.cli import main


def test_an_empty_circuit_still_writes_every_attributed_score(tmp_path, capsys):
    out = tmp_path / "d"
    code = main(["discover", "--model", "permute", "--n", "8", "--method", "eap", "--recheck", "4", "--threshold", "9", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "circuit is empty" in err and "scores.csv" in err
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 12 and scores["approx_score"].notna().all()  # every edge of permute, attributed
    assert scores["score"].notna().sum() == 4  # the four strongest re-checked exactly
    assert "No circuit" in (out / "report.md").read_text()


def test_recheck_sets_how_many_attributed_edges_are_scored_exactly():
    from pathpatch import discover

    result = discover("permute", method="eap-ig", steps=3, recheck=6, n=16)
    exact = result.scores.dropna(subset=["score"])
    assert len(result.scores) == 12 and len(exact) == 6
    top = result.scores.reindex(result.scores["approx_score"].abs().sort_values(ascending=False).index).head(6)
    assert set(exact["edge"]) == set(top["edge"])  # the strongest by attribution are the ones re-checked
    assert "6 re-checked exactly (of 12 attributed)" in result.summary()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_bad_max_memory_is_refused_naming_the_flag(value, tmp_path, capsys):
    try:  # a non-finite number is refused while parsing (argparse exits), a finite one out of range by the command
        code = main(["discover", "--model", "permute", "--max-memory", value, "--out", str(tmp_path / "d")])
    except SystemExit as stop:
        code = stop.code
    assert code == 2 and "--max-memory" in capsys.readouterr().err


def test_a_check_whose_claims_need_no_circuit_discovers_none(tmp_path, monkeypatch):
    import pathpatch.pipeline as pipeline
    from pathpatch.pipeline import checking

    def refuse(*args, **kwargs):
        raise AssertionError("discover ran although no claim reads a circuit")

    monkeypatch.setattr(checking, "find_circuit", refuse)
    path = tmp_path / "h.toml"
    path.write_text('model = "permute"\ntask = "permute"\n[method]\nn = 16\n\n[[claim]]\nkind = "metric"\nmin = 0.5\n\n'
                    '[[claim]]\nkind = "dla"\nnode = "L1H0"\nmin = 0.1\n')
    report = pipeline.check(path)
    assert report.passed and report.circuit is None, report.text()
    paths, message = report.write(tmp_path / "out")
    assert "circuit" not in paths and "no circuit" in message


def test_an_interrupted_check_keeps_the_verdicts_it_has(tmp_path, monkeypatch, capsys):
    from pathpatch.claims import checks

    def stop(ctx, claim):
        raise KeyboardInterrupt

    monkeypatch.setitem(checks.CHECKS, "dla", stop)
    path = tmp_path / "h.toml"
    path.write_text('model = "permute"\ntask = "permute"\n[method]\nn = 16\n\n[[claim]]\nkind = "metric"\nmin = 0.5\n\n'
                    '[[claim]]\nkind = "dla"\nnode = "L1H0"\nmin = 0.1\n')
    assert main(["check", str(path), "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert "[1/2] PASS" in err and "interrupted: 1 verdicts written" in err
    saved = json.loads((tmp_path / "out" / "check.json").read_text())
    assert saved["complete"] is False and [c["kind"] for c in saved["claims"]] == ["metric"]
    assert "INTERRUPTED after 1 of 2 claims" in (tmp_path / "out" / "check.md").read_text()


def test_a_bad_memory_budget_or_metric_run_is_refused_from_python(tmp_path):
    from pathpatch.claims.hypotheses import load_hypothesis
    from pathpatch.pipeline import DiscoverConfig

    with pytest.raises(ValueError, match="max_memory=0"):
        DiscoverConfig(max_memory=0)
    path = tmp_path / "h.toml"
    path.write_text('model = "permute"\ntask = "permute"\n\n[[claim]]\nkind = "metric"\nrun = "dirty"\nmin = 0.5\n')
    with pytest.raises(ValueError, match="run = 'dirty'; choose \"clean\""):
        load_hypothesis(path)
