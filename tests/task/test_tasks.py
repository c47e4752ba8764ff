"""Seed tasks: formats, determinism, minimal corruptions, metrics, and validation errors."""

import pytest
import torch

from pathpatch.models import Task, build_task
from pathpatch.models.seeds import permute, recurrence, sorted_list, trigrams
from pathpatch.task.task import logit_diff

TOKEN_TASKS = ["permute", "sorted-list", "trigrams"]


@pytest.mark.parametrize("name", [*TOKEN_TASKS, "recurrence"])
def test_same_seed_gives_same_task_and_other_seed_differs(name):
    a, b, c = build_task(name, n=8, seed=1), build_task(name, n=8, seed=1), build_task(name, n=8, seed=2)
    assert torch.equal(a.clean, b.clean) and torch.equal(a.corrupt, b.corrupt)
    assert not torch.equal(a.clean, c.clean)


def test_permute_format_and_answers():
    task = build_task("permute", n=16, seed=0)
    clean = task.clean
    assert (clean[:, 0] == permute.BOS).all() and (clean[:, 4] == permute.MID).all() and (clean[:, 8] == permute.END).all()
    values, pointers = clean[:, 1:4], clean[:, 5:8]
    assert (pointers.sort(-1).values == torch.arange(3)).all()
    assert torch.equal(clean[:, 9:12], values.gather(1, pointers))
    assert torch.equal(task.answers, values.gather(1, pointers))
    assert task.positions.tolist() == [8, 9, 10]


def test_permute_values_corruption_keeps_pointers_and_changes_every_answer():
    task = build_task("permute", n=32, seed=0, corruption="values")
    changed = (task.clean != task.corrupt).any(0).nonzero().flatten().tolist()
    assert set(changed) <= {1, 2, 3, 9, 10, 11}
    assert torch.equal(task.clean[:, 5:8], task.corrupt[:, 5:8])
    assert (task.answers != task.wrong_answers).all()


def test_permute_pointer_corruption_keeps_values():
    task = build_task("permute", n=32, seed=0, corruption="pointers")
    assert torch.equal(task.clean[:, 1:4], task.corrupt[:, 1:4])
    assert (task.clean[:, 5:8] != task.corrupt[:, 5:8]).all()
    assert (task.answers != task.wrong_answers).all()


def test_sorted_list_targets_are_the_sorted_values():
    task = build_task("sorted-list", n=8, seed=0)
    values = task.clean[:, : sorted_list.LIST_LEN]
    assert (values.sort(-1).values.diff(dim=-1) > 0).all(), "values are distinct"
    assert torch.equal(task.answers, values.sort(-1).values)
    assert (task.clean[:, sorted_list.LIST_LEN] == sorted_list.SEP).all()


def test_trigram_prefixes_are_unique_and_sampler_completes_them():
    t = trigrams.trigrams()
    assert len(t) == trigrams.N_TRIGRAMS
    assert len({(a, b) for a, b, _ in t.tolist()}) == trigrams.N_TRIGRAMS
    batch = trigrams.sample(64, torch.Generator().manual_seed(0))
    table = trigrams.completion_table()
    rows, cols = batch.mask.nonzero(as_tuple=True)
    assert len(rows) > 64, "several trigrams per sequence"
    prefix = table[batch.inputs[rows, cols - 1], batch.inputs[rows, cols]]
    assert torch.equal(prefix, batch.targets[rows, cols])


def test_trigram_corruption_changes_only_the_first_prefix_token():
    task = build_task("trigrams", n=32, seed=0)
    diff = (task.clean != task.corrupt).any(0).nonzero().flatten().tolist()
    assert diff == [trigrams.TASK_LEN - 2]
    table = trigrams.completion_table()
    assert torch.equal(table[task.clean[:, -2], task.clean[:, -1]], task.answers[:, 0])
    assert torch.equal(table[task.corrupt[:, -2], task.corrupt[:, -1]], task.wrong_answers[:, 0])
    assert (task.answers != task.wrong_answers).all()


def test_recurrence_follows_its_rule():
    seq = recurrence.recurrences(16, torch.Generator().manual_seed(0))
    a, b, c = seq[:, 0], seq[:, 1], seq[:, 2]
    # a_{j+1} - a_j = c (a_j - a_{j-1}) with one scalar c per sequence
    ratio = (c - b) / (b - a)
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-3)
    norms = seq.norm(dim=-1).amax(1)
    assert ((norms >= 1 - 1e-5) & (norms <= 2 + 1e-5)).all()
    task = build_task("recurrence", n=4, seed=0)
    assert task.metric == "mse" and not task.higher_is_better
    assert torch.equal(task.answers, torch.stack([seq_[list(p + 1 for p in recurrence.POSITIONS)] for seq_ in [*recurrence.recurrences(4, torch.Generator().manual_seed(0))]]))


def test_logit_diff_matches_a_loop():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7)
    answers, wrong = torch.randint(0, 7, (3, 2)), torch.randint(0, 7, (3, 2))
    positions = [1, 4]
    expected = torch.tensor(
        [sum(logits[b, p, answers[b, i]] - logits[b, p, wrong[b, i]] for i, p in enumerate(positions)) / 2 for b in range(3)]
    )
    torch.testing.assert_close(logit_diff(logits[:, positions], answers, wrong), expected)
    task = Task("t", torch.zeros(3, 5, dtype=torch.long), torch.ones(3, 5, dtype=torch.long), answers, wrong, torch.tensor(positions))
    torch.testing.assert_close(task.score(logits), expected.mean())


def make(**changes):
    fields = dict(
        name="t",
        clean=torch.zeros(2, 4, dtype=torch.long),
        corrupt=torch.ones(2, 4, dtype=torch.long),
        answers=torch.zeros(2, 1, dtype=torch.long),
        wrong_answers=torch.ones(2, 1, dtype=torch.long),
        positions=torch.tensor([3]),
    )
    return Task(**{**fields, **changes})


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(corrupt=torch.ones(2, 5, dtype=torch.long)), r"clean is \(2, 4\) but corrupt is \(2, 5\)"),
        (dict(corrupt=torch.ones(2, 4)), "give both as token ids"),
        (dict(positions=torch.tensor([4])), r"read positions 4 lie outside inputs of length 4"),
        (dict(positions=torch.tensor([], dtype=torch.long)), "non-empty"),
        (dict(wrong_answers=None), "needs wrong_answers"),
        (dict(answers=torch.zeros(3, 1, dtype=torch.long)), r"answers are \(3, 1\)"),
        (dict(metric="f1"), "unknown metric 'f1'"),
        (dict(clean=torch.zeros(0, 4, dtype=torch.long), corrupt=torch.zeros(0, 4, dtype=torch.long)), "at least one prompt"),
    ],
)
def test_bad_task_fields_get_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        make(**changes)


def test_nan_in_vector_task_is_refused():
    task = build_task("recurrence", n=2, seed=0)
    bad = task.clean.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="clean contains NaN"):
        Task("r", bad, task.corrupt, task.answers, None, task.positions, metric="mse")


def test_tokens_outside_the_vocabulary_are_named(random_model):
    task = make(clean=torch.full((2, 4), 40, dtype=torch.long))
    with pytest.raises(ValueError, match="clean holds token id 40 but the model's vocabulary has 32 tokens"):
        task.check_model(random_model)


def test_inputs_longer_than_context_are_refused(random_model):
    task = make(clean=torch.zeros(2, 20, dtype=torch.long), corrupt=torch.zeros(2, 20, dtype=torch.long))
    with pytest.raises(ValueError, match="20 positions but the model's n_ctx is 16"):
        task.check_model(random_model)


def test_unknown_task_and_corruption_are_named():
    with pytest.raises(KeyError, match="known tasks are permute"):
        build_task("sorting")
    with pytest.raises(ValueError, match="unknown corruption 'zero'; choose one of values, pointers"):
        build_task("permute", corruption="zero")
    with pytest.raises(ValueError, match="n=0"):
        build_task("permute", n=0)


def test_loss_accuracy_and_kl_metrics_match_their_definitions():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 6)
    answers = torch.tensor([[1, 2], [3, 0]])
    base = make(clean=torch.zeros(2, 4, dtype=torch.long), answers=answers, wrong_answers=answers, positions=torch.tensor([1, 3]))
    read = logits[:, [1, 3]]
    loss = Task(**{**base.__dict__, "metric": "loss"})
    expected = -torch.stack([read.log_softmax(-1)[b, i, answers[b, i]] for b in range(2) for i in range(2)]).view(2, 2).mean(-1)
    torch.testing.assert_close(loss.score_per_prompt(logits), expected)
    accuracy = Task(**{**base.__dict__, "metric": "accuracy"})
    torch.testing.assert_close(accuracy.score_per_prompt(logits), (read.argmax(-1) == answers).float().mean(-1))
    kl = Task(**{**base.__dict__, "metric": "kl"}).with_reference(logits)
    assert kl.score(logits).abs() < 1e-6
    other = torch.randn(2, 4, 6)
    p, q = read.softmax(-1), other[:, [1, 3]].softmax(-1)
    torch.testing.assert_close(kl.score_per_prompt(other), (p * (p.log() - q.log())).sum(-1).mean(-1))
    assert not loss.higher_is_better and accuracy.higher_is_better and not kl.higher_is_better


def test_custom_metric_must_return_one_value_per_prompt():
    good = make(metric=lambda read: read[..., 0].mean(-1))
    assert good.score_per_prompt(torch.randn(2, 4, 5)).shape == (2,)
    bad = make(metric=lambda read: read.mean())
    with pytest.raises(ValueError, match=r"must return one value per prompt, shape \(2,\)"):
        bad.score(torch.randn(2, 4, 5))
