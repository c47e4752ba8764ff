"""Position-aware edges and circuits against hand-built TransformerLens hook loops."""

import json

import pytest
import torch

from pathpatch.models import Task, build_task, load_model
from pathpatch.models.task_files import load_task
from pathpatch.patch.attribution import attribute_edges
from pathpatch.patch.circuits import run_circuits, run_circuits_per_prompt
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.edges import patch_edges
from pathpatch.patch.graph import ComputeGraph
from pathpatch.task.groups import Prompt, from_prompts, task_groups
from pathpatch.task.positions import layout
from tests.conftest import hand_patched_metric

OUT_HOOKS = {"embed": ("blocks.0.hook_resid_pre", None), "MLP0": ("blocks.0.hook_mlp_out", None), "MLP1": ("blocks.1.hook_mlp_out", None)}


def out_hook(node):
    if node.kind == "head":
        return f"blocks.{node.layer}.attn.hook_result", node.head
    return OUT_HOOKS[node.name]


def in_hook(node):
    if node.kind == "head_input":
        return f"blocks.{node.layer}.hook_{node.channel}_input", node.head
    if node.kind == "mlp":
        return f"blocks.{node.layer}.hook_mlp_in", None
    return "blocks.1.hook_resid_post", None


def hand_circuit_metric(model, task, keep):
    """One run_with_hooks per circuit, looping over every cut (edge, position): the reader at that
    position reads ``input - out_src + corrupt_src``, with ``out_src`` from this same, patched, pass."""
    graph = ComputeGraph.from_model(model)
    _, corrupt = model.run_with_cache(task.corrupt)
    seen = {}
    by_hook = {}
    for j, dest in enumerate(graph.dests):
        by_hook.setdefault(in_hook(dest)[0], []).append((j, dest))

    def record(name):
        def hook(act, hook):
            seen[name] = act.clone()
            return act
        return hook

    def correct(items):
        def hook(act, hook):
            act = act.clone()
            for j, dest in items:
                _, head = in_hook(dest)
                for i, src in enumerate(graph.sources):
                    if not graph.valid[i, j]:
                        continue
                    name, src_head = out_hook(src)
                    ours = seen[name] if src_head is None else seen[name][:, :, src_head]
                    theirs = corrupt[name] if src_head is None else corrupt[name][:, :, src_head]
                    for pos in range(act.shape[1]):
                        if keep[i, j, pos]:
                            continue
                        fix = ours[:, pos] - theirs[:, pos]
                        if head is None:
                            act[:, pos] -= fix
                        else:
                            act[:, pos, head] -= fix
            return act
        return hook

    hooks = [(name, record(name)) for name in {out_hook(s)[0] for s in graph.sources}]
    hooks += [(name, correct(items)) for name, items in by_hook.items()]
    return task.score_per_prompt(model.run_with_hooks(task.clean, fwd_hooks=hooks))


def test_position_aware_circuit_runs_match_hand_built_hooks(random_model, reference_model, random_task):
    graph = ComputeGraph.from_model(random_model)
    columns = layout(random_task)
    g = torch.Generator().manual_seed(1)
    density = torch.tensor([0.1, 0.6, 0.95])[:, None, None, None]  # sparse, middling and nearly whole circuits in one batch
    masks = torch.rand(3, len(graph.sources), len(graph.dests), len(columns.labels), generator=g) < density
    ours = run_circuits_per_prompt(random_model, random_task, masks, positions=columns)
    for k in range(3):
        expected = hand_circuit_metric(reference_model, random_task, masks[k])
        assert ours[k].tolist() == pytest.approx(expected.tolist(), abs=1e-5)


def test_labels_spanning_positions_keep_an_edge_at_each_of_them(random_model, reference_model, random_task):
    """A label covering positions 1 and 2 keeps (or cuts) an edge at both; the index mask says the same."""
    labelled = Task(**{**random_task.__dict__, "labels": ("BOS", "x", "x", "y", "z", "END")})
    graph = ComputeGraph.from_model(random_model)
    columns = layout(labelled)
    assert columns.labels == ("BOS", "x", "y", "z", "END")
    g = torch.Generator().manual_seed(2)
    by_label = torch.rand(len(graph.sources), len(graph.dests), 5, generator=g) < 0.5
    by_index = by_label[..., [0, 1, 1, 2, 3, 4]]
    ours = run_circuits_per_prompt(random_model, labelled, by_label, positions=columns)[0]
    expected = hand_circuit_metric(reference_model, random_task, by_index)
    assert ours.tolist() == pytest.approx(expected.tolist(), abs=1e-5)


def test_circuit_kept_at_every_position_equals_the_position_free_circuit(random_model, random_task):
    graph = ComputeGraph.from_model(random_model)
    columns = layout(random_task)
    free = graph.valid & ~graph.mask(["L0H1->L1H1.k", "embed->MLP0", "MLP1->logits"])
    everywhere = free[..., None].expand(*free.shape, len(columns.labels))
    assert run_circuits(random_model, random_task, everywhere, positions=columns).item() == pytest.approx(
        run_circuits(random_model, random_task, free).item(), abs=1e-5)


@pytest.mark.parametrize("direction", ["noise", "denoise"])
def test_edges_at_labels_match_hand_built_hooks(random_model, reference_model, random_task, direction):
    labelled = Task(**{**random_task.__dict__, "labels": ("BOS", "x", "x", "y", "z", "END")})
    config = PatchConfig(direction=direction)
    table = patch_edges(random_model, labelled, ["L0H1->L1H1.k", "MLP0->logits", "embed->L0H0.v"], by_pos=True, config=config).set_index("edge")
    assert list(table.index[:5]) == [f"L0H1->L1H1.k@{p}" for p in ("BOS", "x", "y", "z", "END")]
    noise = direction == "noise"
    for edge, label, where in (("L0H1->L1H1.k", "x", [1, 2]), ("MLP0->logits", "END", 5), ("embed->L0H0.v", "x", [1, 2])):
        # one label is every position it covers patched together: "x" is two positions at once
        src, dest = edge.split("->")
        expected = hand_patched_metric(reference_model, random_task, f"{src}->{dest}", noise=noise, pos=where)
        assert table.loc[f"{edge}@{label}", "metric"] == pytest.approx(expected, abs=1e-5), edge


def test_position_rows_mixed_with_position_free_rows_score_as_alone(random_model, random_task):
    mixed = patch_edges(random_model, random_task, ["L0H1->L1H1.k@2", "MLP0->logits"]).set_index("edge")["metric"]
    alone = patch_edges(random_model, random_task, ["MLP0->logits"])["metric"].item()
    at = patch_edges(random_model, random_task, ["L0H1->L1H1.k"], by_pos=True).set_index("edge")["metric"]
    assert mixed["MLP0->logits"] == pytest.approx(alone, abs=1e-5)
    assert mixed["L0H1->L1H1.k@2"] == pytest.approx(at["L0H1->L1H1.k@2"], abs=1e-5)


def ragged_task():
    """Prompts of lengths 5, 6 and 7 whose roles S (a span), IO and END sit at different indices."""
    g = torch.Generator().manual_seed(3)
    prompts = []
    for length, labels in ((5, {"S": [1], "IO": 2}), (6, {"S": [1, 3], "IO": 2}), (7, {"S": [2, 4], "IO": 1}), (6, {"S": [1, 3], "IO": 2})):
        clean, corrupt = torch.randint(0, 32, (length,), generator=g), torch.randint(0, 32, (length,), generator=g)
        names = ["other"] * length
        for name, where in labels.items():
            for p in where if isinstance(where, list) else [where]:
                names[p] = name
        names[-1] = "END"
        prompts.append(Prompt(clean, corrupt, torch.randint(0, 32, (1,), generator=g), torch.randint(0, 32, (1,), generator=g),
                              torch.tensor([length - 1]), labels=tuple(names)))
    return from_prompts("ragged", prompts)


def test_labelled_edges_over_prompts_of_different_lengths_match_each_prompt_alone(random_model, reference_model):
    task = ragged_task()
    assert len(task_groups(task)) == 3
    table = patch_edges(random_model, task, ["L0H1->L1H1.k", "embed->L0H0.v"], by_pos=True)
    per_prompt = table.attrs["per_prompt"]
    rows = {edge: i for i, edge in enumerate(table["edge"])}
    column = 0
    for group in task_groups(task):
        for b in range(group.clean.shape[0]):
            alone = Task("one", group.clean[b:b + 1], group.corrupt[b:b + 1], group.answers[b:b + 1], group.wrong_answers[b:b + 1],
                         group.positions)
            for edge, label in (("L0H1->L1H1.k", "S"), ("embed->L0H0.v", "IO"), ("L0H1->L1H1.k", "END")):
                where = [i for i, name in enumerate(group.labels) if name == label]
                src, dest = edge.split("->")
                expected = hand_patched_metric(reference_model, alone, f"{src}->{dest}", pos=where)
                assert per_prompt[rows[f"{edge}@{label}"], column].item() == pytest.approx(expected, abs=1e-5), (edge, label, b)
            column += 1


def test_position_aware_circuits_over_prompts_of_different_lengths_match_each_prompt_alone(random_model, reference_model):
    task = ragged_task()
    columns = layout(task)
    assert columns.labels == ("S", "IO", "END", "other")
    graph = ComputeGraph.from_model(random_model)
    g = torch.Generator().manual_seed(4)
    mask = torch.rand(len(graph.sources), len(graph.dests), len(columns.labels), generator=g) < 0.5
    ours = run_circuits_per_prompt(random_model, task, mask, positions=columns)[0]
    column = 0
    for group in task_groups(task):
        index = mask[..., [columns.labels.index(label) for label in group.labels]]  # [src dest pos] of this group's prompts
        for b in range(group.clean.shape[0]):
            alone = Task("one", group.clean[b:b + 1], group.corrupt[b:b + 1], group.answers[b:b + 1], group.wrong_answers[b:b + 1],
                         group.positions)
            assert ours[column].item() == pytest.approx(hand_circuit_metric(reference_model, alone, index).item(), abs=1e-5)
            column += 1


def test_position_indices_over_prompts_of_different_lengths_are_refused(random_model):
    prompts = [Prompt(torch.arange(n), torch.arange(n) + 1, torch.tensor([1]), torch.tensor([2]), torch.tensor([n - 1])) for n in (4, 5)]
    with pytest.raises(ValueError, match="label the positions by role"):
        patch_edges(random_model, from_prompts("ragged", prompts), ["embed->logits"], by_pos=True)


def test_unknown_position_label_is_named(random_model, random_task):
    with pytest.raises(KeyError, match="Unknown position 'END'; this task's positions are 0, 1, 2"):
        patch_edges(random_model, random_task, ["MLP0->logits@END"])


def test_eap_by_position_sums_to_eap_over_all_positions(random_model):
    task = ragged_task()
    free = attribute_edges(random_model, task, "eap-ig", steps=3).set_index("edge")["score"]
    by_pos = attribute_edges(random_model, task, "eap-ig", steps=3, by_pos=True)
    summed = by_pos.assign(base=by_pos["edge"].str.split("@").str[0]).groupby("base", sort=False)["score"].sum()
    assert summed.loc[free.index].to_numpy() == pytest.approx(free.to_numpy(), abs=1e-5)


def test_jsonl_labels_by_role_and_by_template(tmp_path):
    path = tmp_path / "prompts.jsonl"
    lines = [
        {"clean": [5, 1, 2, 3], "corrupt": [5, 1, 4, 3], "answer": 7, "wrong_answer": 8, "labels": {"S1": 1, "X": [2], "END": -1}},
        {"clean": [5, 1, 9, 2, 3], "corrupt": [5, 1, 9, 4, 3], "answer": 7, "wrong_answer": 8, "positions": {"S1": 1, "X": 3, "END": -1}},
        {"clean": [5, 1, 2, 3], "corrupt": [5, 1, 4, 3], "answer": 7, "wrong_answer": 8, "labels": ["BOS", "S1", "X", "END"]},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines))
    groups = task_groups(load_task(path))
    assert [g.labels for g in groups] == [("other", "S1", "X", "END"), ("other", "S1", "other", "X", "END"), ("BOS", "S1", "X", "END")]
    assert [g.positions.tolist() for g in groups] == [[3], [4], [3]]


@pytest.mark.parametrize("labels, message", [
    ({"S1": 9}, "label 'S1' gives int 9; give a position"),
    ({"S1": 1, "T": 1}, "position 1 is labelled both 'S1' and 'T'"),
    (["A", "B"], "a label list needs one name per token"),
    ({"other": 1}, "other than 'other'"),
    ({"S 1": 1}, "label 'S 1' must be a name"),
    ("END", "got"),
])
def test_bad_jsonl_labels_name_file_line_and_fix(tmp_path, labels, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"clean": [5, 1, 2, 3], "corrupt": [5, 1, 4, 3], "answer": 7, "wrong_answer": 8, "labels": labels}))
    with pytest.raises(ValueError, match=rf"bad.jsonl:1: field 'labels'.*{message}"):
        load_task(path)


def test_permute_position_aware_edges_agree_with_per_position_patching():
    """The bundled permute model, scored by position: each kept edge's score is what patching that
    edge at that one position alone (TransformerLens hooks) gives."""
    from pathpatch.pipeline import discover

    model, task = load_model("permute"), build_task("permute", n=16)
    result = discover(model, task, granularity="position", n=16)
    kept = result.circuit.scored_edges
    assert kept and all("@" in e for e in kept)
    assert result.circuit.graph.graph["granularity"] == "position"
    scores = result.scores.set_index("edge")
    reference = load_model("permute")
    reference.set_use_attn_result(True)
    labels = task.labels
    for edge in kept:
        base, label = edge.split("@")
        src, dest = base.split("->")
        patched = _permute_patch(reference, task, src, dest, labels.index(label))
        assert scores.loc[edge, "score"] == pytest.approx(scores.attrs["clean_metric"] - patched, abs=1e-4), edge
    assert result.faithfulness["faithfulness"] > 0.9


def _permute_patch(model, task, src, dest, pos):
    """Metric of the clean run with ``dest`` at ``pos`` reading ``src``'s corrupt output (attention-only, 2 layers)."""
    _, clean = model.run_with_cache(task.clean)
    _, corrupt = model.run_with_cache(task.corrupt)
    out = {"embed": "blocks.0.hook_resid_pre", "L0H0": "blocks.0.attn.hook_result", "L1H0": "blocks.1.attn.hook_result"}[src]
    pick = (lambda c: c[out]) if src == "embed" else (lambda c: c[out][:, :, 0])
    delta = pick(corrupt)[:, pos] - pick(clean)[:, pos]
    hook_name = "blocks.1.hook_resid_post" if dest == "logits" else f"blocks.{dest[1]}.hook_{dest[-1]}_input"

    def hook(act, hook):
        act = act.clone()
        if dest == "logits":
            act[:, pos] += delta
        else:
            act[:, pos, 0] += delta
        return act

    return task.score(model.run_with_hooks(task.clean, fwd_hooks=[(hook_name, hook)])).item()


def test_positions_after_the_last_read_one_name_no_rows_and_resample_denoising_runs(random_model, random_task):
    short = Task(**{**random_task.__dict__, "positions": torch.tensor([3]), "answers": random_task.answers[:, :1],
                    "wrong_answers": random_task.wrong_answers[:, :1]})
    config = PatchConfig(direction="denoise", corruption="resample")
    table = patch_edges(random_model, short, ["L0H1->L1H1.k"], by_pos=True, config=config)
    assert list(table["edge"]) == [f"L0H1->L1H1.k@{p}" for p in range(4)]


def test_prompts_of_one_length_with_different_labels_run_as_one_batch_when_positions_do_not_matter(random_model):
    task = ragged_task()
    same = [g for g in task_groups(task) if g.clean.shape[1] == 6][0]
    g = torch.Generator().manual_seed(5)
    prompts = []
    for labels in (("other", "S", "IO", "S", "other", "END"), ("other", "IO", "S", "other", "S", "END")) * 2:
        prompts.append(Prompt(torch.randint(0, 32, (6,), generator=g), torch.randint(0, 32, (6,), generator=g), same.answers[0], same.wrong_answers[0],
                              torch.tensor([5]), labels=labels))
    labelled = from_prompts("t", prompts)
    plain = from_prompts("t", [Prompt(p.clean, p.corrupt, p.answers, p.wrong_answers, p.positions) for p in
                               [prompts[0], prompts[2], prompts[1], prompts[3]]])  # the labelled task's group order
    assert len(task_groups(labelled)) == 2 and len(task_groups(plain)) == 1
    for corruption in ("mean", "resample"):
        config = PatchConfig(direction="noise", corruption=corruption, normalize=False)  # one shared answer: resample keeps the mean
        ours = patch_edges(random_model, labelled, ["L0H1->L1H1.k"], config=config)["metric"].item()
        assert ours == pytest.approx(patch_edges(random_model, plain, ["L0H1->L1H1.k"], config=config)["metric"].item(), abs=1e-6)


def test_path_patching_refuses_positions_it_would_ignore(random_model, random_task):
    from pathpatch.patch.edges import path_patch

    with pytest.raises(ValueError, match="path_patch runs over all positions"):
        path_patch(random_model, random_task, ["L1H1.k@2"])
    with pytest.raises(KeyError, match="ends in '@' without a position"):
        patch_edges(random_model, random_task, ["L0H1->L1H1.k@"])
