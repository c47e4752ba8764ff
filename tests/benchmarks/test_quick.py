"""`python -m benchmarks --quick` runs end to end at tiny sizes (CI); its numbers agree, timings are not checked."""

import pytest

from benchmarks.__main__ import main


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
    planted = roc[(roc["truth"] == "planted") & roc["method"].isin(["exact", "acdc"])]
    assert len(planted) == 6
    assert (planted["ROC AUC"] >= 0.98).all(), planted


def test_results_and_labelled_figures_are_written(quick):
    _, out = quick
    text = (out / "RESULTS.md").read_text()
    assert "## CPU:" in text and "## GPU" in text and "Not yet measured" in text
    for name in ("scaling.png", "roc.png", "faithfulness.png"):
        png = out / "results" / "figures" / "cpu" / name
        assert png.read_bytes()[:4] == b"\x89PNG", name
        assert f"results/figures/cpu/{name}" in text
