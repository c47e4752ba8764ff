"""The benchmark script runs end to end at tiny sizes and its two sides agree (timings are not checked)."""

from benchmarks.patching import main


def test_quick_benchmark_runs_and_results_agree(capsys):
    rows = main(["--quick"])
    assert len(rows) == 6
    for row in rows:
        if row.max_diff is not None:
            assert row.max_diff <= 1e-5, row.work
    assert "| work |" in capsys.readouterr().out
