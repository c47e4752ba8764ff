"""Patching heatmaps, attention figures and the tidy patching table (pathpatch/report/plots.py)."""

from dataclasses import replace

import numpy as np
import pytest

from pathpatch.models import build_task, load_model
from pathpatch.names import hook_name
from pathpatch.patch.activation import activation_patch, block_every
from pathpatch.patch.config import PatchConfig
from pathpatch.report import plots

DENOISE = PatchConfig(direction="denoise")  # TransformerLens' patching convention: clean activations into the corrupt run


@pytest.fixture(scope="module")
def permute():
    return load_model("permute"), build_task("permute", n=4)


@pytest.fixture(scope="module")
def resid(permute):
    model, task = permute
    return activation_patch(model, task, "resid_pre", config=DENOISE)


def image_of(fig):
    return fig.axes[0].images[0]


def tick_texts(labels):
    return [label.get_text() for label in labels]


def test_heatmap_cells_equal_normalized_patching_result(resid):
    shown = np.asarray(image_of(plots.patching_heatmap(resid, "resid_pre")).get_array())
    expected = (resid.values - resid.corrupt_metric) / (resid.clean_metric - resid.corrupt_metric)  # [layer pos]
    assert shown.shape == tuple(resid.values.shape) == (2, 12)
    np.testing.assert_allclose(shown, expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(shown.ravel(), resid.table["normalized"].to_numpy(), atol=1e-6)


def test_colour_limits_are_symmetric_around_zero_and_cover_every_value(resid):
    image = image_of(plots.patching_heatmap(resid, "resid_pre"))
    low, high = image.get_clim()
    assert low == -high and high >= np.abs(np.asarray(image.get_array())).max() and high >= 1.0
    assert image.get_cmap().name == "RdBu"


def test_unnormalized_result_is_drawn_as_score_over_the_metric_gap(resid):
    raw = replace(resid, table=resid.table.drop(columns="normalized"))  # as PatchConfig(normalize=False) returns it
    fig = plots.patching_heatmap(raw, "resid_pre")
    shown = np.asarray(image_of(fig).get_array())
    np.testing.assert_allclose(shown.ravel(), resid.table["normalized"].to_numpy(), atol=1e-5)
    low, high = image_of(fig).get_clim()
    assert low == -high == -np.abs(shown).max()
    assert fig.axes[1].get_ylabel() == "score / |clean − corrupt metric|"


def test_axes_label_positions_and_layers(resid):
    fig = plots.patching_heatmap(resid, "resid_pre", tokens=[f"t{i}" for i in range(12)])
    ax = fig.axes[0]
    assert tick_texts(ax.get_xticklabels()) == [f"{i}: t{i}" for i in range(12)]
    assert tick_texts(ax.get_yticklabels()) == ["0", "1"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("position", "layer")
    assert fig.axes[1].get_ylabel() == plots.NORMALIZED_LABEL
    bare = plots.patching_heatmap(resid, "resid_pre").axes[0]
    assert tick_texts(bare.get_xticklabels()) == [str(i) for i in range(12)]


def test_per_position_head_act_has_one_row_per_head(permute):
    model, task = permute
    result = activation_patch(model, task, "z", config=DENOISE)  # [layer pos head]
    cells = plots.heatmap_grid(result, "z")
    expected = (result.values - result.corrupt_metric) / (result.clean_metric - result.corrupt_metric)
    assert cells.rows == ["L0H0", "L1H0"] and cells.row_axis == "head"
    np.testing.assert_allclose(cells.values, expected[:, :, 0].numpy(), atol=1e-5)


def test_head_act_without_positions_is_layer_by_head(permute):
    model, task = permute
    result = activation_patch(model, task, "z", per_pos=False, config=DENOISE)  # [layer head]
    fig = plots.patching_heatmap(result, "z")
    expected = (result.values - result.corrupt_metric) / (result.clean_metric - result.corrupt_metric)
    np.testing.assert_allclose(np.asarray(image_of(fig).get_array()), expected.numpy(), atol=1e-5)
    assert tick_texts(fig.axes[0].get_xticklabels()) == ["H0"] and fig.axes[0].get_xlabel() == "head"


def test_block_every_draws_the_named_activation_only(permute):
    model, task = permute
    result = block_every(model, task, config=DENOISE)  # [act layer pos]
    shown = np.asarray(image_of(plots.patching_heatmap(result, "attn_out")).get_array())
    expected = (result.values[1] - result.corrupt_metric) / (result.clean_metric - result.corrupt_metric)
    np.testing.assert_allclose(shown, expected.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match=r"holds 'resid_pre', 'attn_out', not 'mlp_out'"):
        plots.patching_heatmap(result, "mlp_out")


def test_png_bytes_repeat_for_the_same_input(resid, tmp_path):
    first = plots.figure_png(plots.patching_heatmap(resid, "resid_pre"))
    saved = plots.save_figure(plots.patching_heatmap(resid, "resid_pre"), tmp_path / "heat.png")
    assert saved.read_bytes() == first and first.startswith(b"\x89PNG")
    with pytest.raises(ValueError, match=r"ending in \.png or \.svg"):
        plots.save_figure(plots.patching_heatmap(resid, "resid_pre"), tmp_path / "heat.jpg")


def test_patching_table_is_tidy_with_tokens(resid, permute):
    model, task = permute
    table = plots.patching_table(resid, "resid_pre", tokens=[f"t{i}" for i in range(12)])
    assert list(table.columns) == list(plots.TABLE_COLUMNS)
    assert table["pos"].tolist() == list(range(12)) * 2 and table["head"].isna().all()
    assert table["token"].tolist() == [f"t{i}" for i in range(12)] * 2
    np.testing.assert_allclose(table["metric"], resid.values.ravel().numpy())
    heads = plots.patching_table(activation_patch(model, task, "z", per_pos=False, config=DENOISE))
    assert heads["pos"].isna().all() and heads["head"].tolist() == [0, 0] and (heads["token"] == "").all()


def test_attention_mean_equals_mean_of_cached_patterns(permute):
    model, task = permute
    fig = plots.attention_patterns(model, task, ["L1H0.v", "L1H0"], n_examples=2)  # L1H0.v stands for L1H0, drawn once
    _, cache = model.run_with_cache(task.clean)
    pattern = cache[hook_name("pattern", 1)][:, 0]  # [batch dest src]
    panels = [np.asarray(ax.images[0].get_array()) for ax in fig.axes[:3]]
    np.testing.assert_allclose(panels[0], pattern.mean(0).numpy(), atol=1e-6)
    np.testing.assert_allclose(panels[1], pattern[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(panels[2], pattern[1].numpy(), atol=1e-6)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["L1H0 mean of 4 prompts", "L1H0 prompt 0", "L1H0 prompt 1"]
    assert len(fig.axes) == 4  # three panels and one colour bar
    np.testing.assert_allclose(plots.head_patterns(model, task.clean, ["L0H0"])[0], cache[hook_name("pattern", 0)][:, 0], atol=1e-6)


def test_attention_rejects_names_that_are_not_heads(permute):
    model, task = permute
    with pytest.raises(ValueError, match="'embed' is not an attention head"):
        plots.attention_patterns(model, task, ["embed"])
    with pytest.raises(ValueError, match="No heads given"):
        plots.attention_patterns(model, task, [])
    with pytest.raises(ValueError, match="L9H0"):
        plots.head_patterns(model, task.clean, ["L9H0"])


def test_tokenizer_models_label_positions_with_tokens(tiny_gpt2_dir):
    model = load_model(str(tiny_gpt2_dir))
    task = build_task("weekday", model=model, n=4)
    tokens = model.to_str_tokens(task.clean[0])
    result = activation_patch(model, task, "resid_pre", config=DENOISE)
    ticks = tick_texts(plots.patching_heatmap(result, "resid_pre", tokens=plots.str_tokens(model, task)).axes[0].get_xticklabels())
    assert ticks == [f"{i}: {t}" for i, t in enumerate(tokens)]
    second = model.to_str_tokens(task.clean[1])
    fig = plots.attention_patterns(model, task, ["L0H1"], n_examples=2)
    assert tick_texts(fig.axes[2].get_yticklabels()) == [f"{i}: {t}" for i, t in enumerate(second)]
    assert tick_texts(fig.axes[0].get_yticklabels()) == [str(i) for i in range(len(tokens))]
