"""discover() with default settings: both directions, faithfulness both ways, and doubts that say what to try.

Planted models give the ground truth: ``planted-redundant`` (an OR that only denoising sees) and
``planted-pointer`` (edges the paired corruption hides, which resampling shows) beside the plain ones.
"""

import pytest
import torch

from pathpatch.cli import main
from pathpatch.models.planted_zoo import get_planted
from pathpatch.patch.attribution import attribute_edges, spearman
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.edges import patch_edges
from pathpatch.pipeline import DiscoverConfig, discover, discovery, resolve

PLAIN = ("planted-copy", "planted-induction", "planted-negative")
HIDDEN = {"embed->L0H0.v", "L0H0->L1H0.q"}  # planted-pointer: the pointer's edges, the same in clean and paired corrupt


@pytest.fixture(scope="module", autouse=True)
def no_pictures():
    """Attention plots take seconds and are not what these tests check."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(discovery, "circuit_attention_png", lambda *args, **kwargs: None)
        yield


@pytest.fixture(scope="module")
def default_runs(no_pictures):
    return {}


def run(cache: dict, name: str, **settings):
    """discover(name, **settings), once per module for each combination."""
    key = (name, tuple(sorted(settings.items())))
    if key not in cache:
        cache[key] = discover(name, n=32, **settings)
    return cache[key]


@pytest.mark.parametrize("name", [*PLAIN, "planted-redundant"])
def test_defaults_recover_exactly_the_planted_edges(default_runs, name):
    result = run(default_runs, name)
    assert set(result.circuit.scored_edges) == set(get_planted(name).edges)
    assert not result.doubts, result.doubts


def test_or_inputs_are_kept_by_denoising_alone(default_runs):
    scores = run(default_runs, "planted-redundant").scores.set_index("edge")
    assert scores.loc["MLP1->logits", "kept_by"] == "both"
    for edge in ("embed->L0H0.v", "L0H0->MLP1", "embed->L1H0.v", "L1H0->MLP1"):
        assert scores.loc[edge, "kept_by"] == "denoise"
        assert abs(scores.loc[edge, "normalized_noise"]) < 1e-6 and scores.loc[edge, "normalized_denoise"] == pytest.approx(1.0, abs=1e-4)
    assert (scores["normalized"] == scores["normalized_noise"]).all()  # the primary direction stays in score/normalized


def test_noising_alone_misses_the_or_and_the_summary_says_what_to_try(default_runs):
    result = run(default_runs, "planted-redundant", both_directions=False)
    assert set(result.circuit.scored_edges) != set(get_planted("planted-redundant").edges)
    assert result.faithfulness["faithfulness"] < 0.8
    assert "WARNING: faithfulness is below 0.8" in result.summary() and "both directions (drop --one-direction)" in result.summary()


def test_attribution_rechecks_candidates_of_both_directions(default_runs):
    result = run(default_runs, "planted-redundant", method="eap-ig")
    assert set(result.circuit.scored_edges) == set(get_planted("planted-redundant").edges)
    assert {"approx_noise", "approx_denoise", "normalized_denoise"} <= set(result.scores.columns)
    assert result.scores.set_index("edge").loc["L0H0->MLP1", "kept_by"] == "denoise"


def test_edges_the_paired_corruption_hides_are_named_with_the_fix(default_runs):
    result = run(default_runs, "planted-pointer")
    assert set(result.circuit.scored_edges) == set(get_planted("planted-pointer").edges) - HIDDEN  # all the paired task needs
    assert result.faithfulness["faithfulness"] == pytest.approx(1.0, abs=1e-4)
    resample = result.cross.set_index("corruption").loc["resample"]
    assert resample["faithfulness"] < 0.8 and set(resample["added"].split(";")) == HIDDEN
    summary = result.summary()
    assert "WARNING: the paired corruption may hide edges" in summary and "--corruption resample" in summary
    assert all(edge in summary for edge in HIDDEN)


def test_resample_discovery_recovers_the_pointer_circuit_exactly(default_runs):
    result = run(default_runs, "planted-pointer", corruption="resample")
    assert set(result.circuit.scored_edges) == set(get_planted("planted-pointer").edges) and not result.doubts
    others = result.scores[~result.scores["edge"].isin(get_planted("planted-pointer").edges)]
    assert others[["normalized_noise", "normalized_denoise"]].abs().max().max() < 1e-6  # denoising starts from the resampled run


def test_resample_shares_are_of_resampling_s_own_gap():
    model, task = resolve("planted-pointer", None, DiscoverConfig(n=32))
    order = torch.randperm(task.clean.shape[0], generator=torch.Generator().manual_seed(0))  # resample's permutation (seed 0)
    with torch.no_grad():  # every edge resampled is the model run on the resampled prompts, scored on the clean answers
        clean, corrupt = task.score(model(task.clean)).item(), task.score(model(task.clean[order])).item()
    paired = patch_edges(model, task, ["L1H0->logits"])
    assert abs((clean - corrupt) - (paired.attrs["clean_metric"] - paired.attrs["corrupt_metric"])) > 1.0
    result = discover(model, task, corruption="resample")
    assert result.faithfulness["corrupt_metric"] == pytest.approx(corrupt, abs=1e-5)
    row = result.scores.set_index("edge").loc["L1H0->logits"]
    assert row["normalized"] == pytest.approx(row["score"] / (clean - corrupt), abs=1e-5)
    assert f"clean - corrupt = {clean - corrupt:.4g}" in result.report() and "resample" in result.report()


def test_mean_ablation_noises_only_and_the_report_says_why():
    result = discover("planted-copy", n=32, corruption="mean")
    assert result.directions == ("noise",) and result.scores["normalized_denoise"].isna().all()
    assert "Noise only: denoising patches clean activations into a corrupt run, and mean ablation has none" in result.report()


def test_summary_warns_below_0_8_and_names_what_to_try(default_runs):
    result = run(default_runs, "planted-negative", top_k=1)  # one of two heads: half the logit difference
    assert result.faithfulness["faithfulness"] == pytest.approx(0.5, abs=1e-3)
    assert result.faithfulness["noise_faithfulness"] == pytest.approx(0.5, abs=1e-3)
    summary = result.summary()
    assert "WARNING: faithfulness is below 0.8" in summary and "a larger --top-k (e.g. 2)" in summary and "--granularity position" in summary
    assert "## Doubts: this circuit is suspect" in result.report()


def test_a_faithful_circuit_gets_no_warning(default_runs):
    result = run(default_runs, "planted-copy")
    assert "WARNING" not in result.summary() and "Doubts" not in result.report()
    f = result.faithfulness
    assert f["noise_faithfulness"] == pytest.approx(1.0 - f["complement_faithfulness"]) and f["noise_faithfulness"] == pytest.approx(1.0, abs=1e-4)


def test_denoising_attribution_ranks_edges_as_exact_denoising_does():
    model, task = resolve("permute", None, DiscoverConfig(n=16))
    exact = patch_edges(model, task, config=PatchConfig(direction="denoise")).set_index("edge")["score"]
    denoise = attribute_edges(model, task, "eap", config=PatchConfig(direction="denoise")).set_index("edge")["score"]
    noise = attribute_edges(model, task, "eap", config=PatchConfig(direction="noise")).set_index("edge")["score"]
    top = exact.abs().sort_values().index[-5:]
    assert set(denoise.abs().sort_values().index[-5:]) == set(top) != set(noise.abs().sort_values().index[-5:])
    assert ((denoise[top] > 0) == (exact[top] > 0)).all()
    assert spearman(denoise, exact) > 0.98 and spearman(denoise, exact) > spearman(noise, exact)


def test_cli_discover_reports_both_directions(tmp_path, capsys):
    assert main(["discover", "--model", "planted-redundant", "--n", "16", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "Both directions: noise (clean run, one edge corrupt" in report and "denoise (corrupt run, one edge clean" in report
    assert "kept by denoise" in report and "noise+denoise" in capsys.readouterr().out
    assert {"normalized_noise", "normalized_denoise", "kept_by"} <= set((tmp_path / "scores.csv").read_text().splitlines()[0].split(","))
