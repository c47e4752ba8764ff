"""`python -m benchmarks --quick` runs end to end at tiny sizes (CI); its numbers agree, timings are not checked."""

import pytest

from benchmarks.__main__ import main
from pathpatch.models.planted_gates import SEEN_BY
from pathpatch.models.planted_zoo import PLANTED

pytestmark = pytest.mark.slow  # minutes of CPU (or processes) on 2 cores: make test-slow


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return main(["--quick", "--out", str(out)]), out


def test_patching_rows_agree_with_transformer_lens(quick):
    results, _ = quick
    assert len(results.rows) == 7
    for row in results.rows:
        if row.max_diff is not None:
            assert row.max_diff <= 1e-5, row.work


def test_scaling_points_agree_and_cover_every_axis(quick):
    results, _ = quick
    assert set(results.scale["axis"]) == {"layers", "heads", "seq", "batch"}
    assert (results.scale["max diff"] <= 1e-5).all()
    assert (results.scale["edges"] > 0).all()


def test_exact_methods_recover_the_planted_circuits(quick):
    roc = quick[0].acc.roc
    planted = roc[(roc["truth"] == "planted") & roc["method"].isin(["exact", "acdc"]) & ~roc["model"].isin(SEEN_BY)]
    assert len(planted) == 2 * (len(PLANTED) - len(SEEN_BY))  # SEEN_BY's models hide edges from paired noising by design
    assert (planted["ROC AUC"] >= 0.98).all(), planted


def test_results_and_labelled_figures_are_written(quick):
    _, out = quick
    text = (out / "RESULTS.md").read_text()
    assert "## CPU:" in text and "## GPU" in text and "Not yet measured" in text
    for name in ("scaling.png", "roc.png", "faithfulness.png"):
        png = out / "results" / "figures" / "cpu" / name
        assert png.read_bytes()[:4] == b"\x89PNG", name
        assert f"results/figures/cpu/{name}" in text


def test_every_method_has_a_cost_row_in_plain_forwards(quick):
    results, out = quick
    methods = " / ".join(row.method for row in results.costs if row.model.startswith("GPT-2"))
    assert all(name in methods for name in ("EAP over", "EAP-IG", "exact re-check", "activation patching"))
    assert "ACDC" in " / ".join(row.method for row in results.costs if row.model == "permute")
    assert all(row.forwards > 0 and row.seconds > 0 for row in results.costs)
    assert "### Every method in plain forwards" in (out / "RESULTS.md").read_text()


def test_compare_names_the_rows_that_got_slower(quick, tmp_path):
    import json

    from benchmarks.__main__ import slower

    rows = json.loads((quick[1] / "results" / "cpu.json").read_text())["rows"]
    doubled = [{**row, "seconds": row["seconds"] * 2} for row in rows]
    assert slower(rows, rows) == [] and len(slower(rows, doubled)) == len(rows)
    assert slower(doubled, rows) == []  # faster is not a regression
    assert slower(rows, [{**rows[0], "seconds": rows[0]["seconds"] * 1.1}]) == []  # within 20%
