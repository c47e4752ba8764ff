"""Language-model tasks (ioi, induction, greater-than, weekday): prompts, answers and position labels decoded back to
text with real tokenizers (SmolLM2's, from the real-LM test model's GGUF, and the tiny GPT-2's), refusals of words a
tokenizer splits, and the engine running each task exactly on a tiny random model that carries the tokenizer."""

import warnings

import pytest
import torch

from pathpatch.models import build_task, load_model, load_task
from pathpatch.models.hook_flags import enable_patching_hooks
from pathpatch.models.seeds import greater_than, induction, ioi, weekday
from pathpatch.patch.attribution import attribute_edges
from pathpatch.patch.circuits import run_circuits_with_baselines
from pathpatch.patch.graph import ComputeGraph
from pathpatch.task.groups import TaskGroups, n_prompts, task_groups
from pathpatch.task.positions import layout
from pathpatch.task.task import Task


def tiny_model_with(tokenizer, n_ctx: int = 32):
    """A seeded random 1-layer model (d_model 8) whose vocabulary is the tokenizer's, with patching hooks."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=1, n_heads=2, d_model=8, d_head=4, d_mlp=16, n_ctx=n_ctx, d_vocab=len(tokenizer),
                                  act_fn="gelu", normalization_type="LN", seed=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return enable_patching_hooks(HookedTransformer(cfg, tokenizer=tokenizer).eval())


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    """A tiny random model carrying SmolLM2's tokenizer (49152 tokens, digits one per token, no BOS of its own)."""
    from transformers import AutoTokenizer

    return tiny_model_with(AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name))


@pytest.fixture(scope="module")
def gpt2(tiny_gpt2_dir):
    """The tiny GPT-2 whose BPE tokenizer was trained on weekday sentences only."""
    return load_model(tiny_gpt2_dir)


@pytest.fixture(scope="module")
def two_digit_model(tmp_path_factory):
    """A model whose BPE tokenizer learned two-digit tokens from greater-than sentences, as GPT-2's has."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import AutoTokenizer, GPT2TokenizerFast

    years = [(c, y, (y * 7) % 100) for c in range(11, 18) for y in range(100)]
    corpus = [f"The trip lasted from the year {c}{y:02d} to the year {c}{z:02d}" for c, y, z in years]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=600, min_frequency=2, special_tokens=["<|endoftext|>"])
    folder = tmp_path_factory.mktemp("two-digit-tokenizer")
    GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>").save_pretrained(folder)
    return tiny_model_with(AutoTokenizer.from_pretrained(folder))


def text(model, tokens) -> str:
    """Decode token ids (one id or several) to text."""
    return model.tokenizer.decode(torch.as_tensor(tokens).reshape(-1).tolist())


def at(group: Task, label: str) -> int:
    """The one position a label names in a group."""
    where = [i for i, name in enumerate(group.labels) if name == label]
    assert len(where) == 1, (label, group.labels)
    return where[0]


def test_ioi_answers_and_labels_name_the_indirect_object_and_the_subject(smollm2):
    task = build_task("ioi", n=16, seed=0, model=smollm2)
    assert isinstance(task, TaskGroups) and n_prompts(task) == 16
    for group in task.groups:
        io, s1, s2, s1_next, end = (at(group, label) for label in ("IO", "S1", "S2", "S1_next", "END"))
        assert s1_next == s1 + 1 and end == group.clean.shape[1] - 1 and group.positions.tolist() == [end]
        assert (group.clean[:, 0] == smollm2.tokenizer.bos_token_id).all()
        for clean, answer, wrong in zip(group.clean, group.answers[:, 0], group.wrong_answers[:, 0]):
            assert text(smollm2, clean[io]) == text(smollm2, answer) and text(smollm2, answer).startswith(" ")
            assert text(smollm2, clean[s1]) == text(smollm2, clean[s2]) == text(smollm2, wrong) != text(smollm2, answer)
            assert len(smollm2.to_tokens(text(smollm2, answer), prepend_bos=False)[0]) == 1
            assert text(smollm2, clean[end]) == " to"


def test_ioi_abc_corrupt_prompts_change_exactly_the_three_names(smollm2):
    for group in task_groups(build_task("ioi", n=16, seed=1, model=smollm2, corruption="abc")):
        names = sorted(at(group, label) for label in ("IO", "S1", "S2"))
        for clean, corrupt, answer, wrong in zip(group.clean, group.corrupt, group.answers[:, 0], group.wrong_answers[:, 0]):
            assert (clean != corrupt).nonzero()[:, 0].tolist() == names
            assert len(set(corrupt[names].tolist()) | {int(answer), int(wrong)}) == 5, "three other names, all different"


def test_ioi_swap_names_the_indirect_object_again_at_S2(smollm2):
    task = build_task("ioi", n=8, seed=0, model=smollm2, corruption="swap")
    assert task.corruption == "swap"
    for group in task_groups(task):
        s2 = at(group, "S2")
        assert ((group.clean != group.corrupt).nonzero()[:, 1] == s2).all()
        assert torch.equal(group.corrupt[:, s2], group.answers[:, 0])


def test_ioi_is_deterministic_for_a_seed(smollm2):
    def flat(task):
        return [torch.cat([g.clean.flatten(), g.corrupt.flatten(), g.answers.flatten()]) for g in task_groups(task)]

    first, again, other = (flat(build_task("ioi", n=8, seed=seed, model=smollm2)) for seed in (3, 3, 4))
    assert all(torch.equal(a, b) for a, b in zip(first, again)) and len(first) == len(again)
    assert [a.tolist() for a in first] != [b.tolist() for b in other]


def test_ioi_refuses_a_given_name_that_splits(smollm2):
    with pytest.raises(ValueError, match=r"Task 'ioi': the name ' Bartholomew' is 3 tokens \[' Barth', 'olome', 'w'\]"):
        ioi.make_task(4, 0, model=smollm2, names=["Mary", "John", "Anna", "Paul", "Bartholomew"])


def test_ioi_refuses_a_tokenizer_with_too_few_single_token_names(gpt2):
    with pytest.raises(ValueError, match=r"only 0 of 110 names are single tokens .* ' Aaron' -> \d+ tokens"):
        build_task("ioi", n=4, model=gpt2)


def test_ioi_through_zoo_and_load_task(smollm2):
    task = load_task("ioi", smollm2, n=8, seed=2, corruption="swap")
    assert n_prompts(task) == 8 and task.corruption == "swap" and task.metric_name == "logit_diff"
    with pytest.raises(ValueError, match="unknown corruption 'xyz'; choose one of abc, swap"):
        build_task("ioi", n=8, model=smollm2, corruption="xyz")
    with pytest.raises(ValueError, match="needs a model with a tokenizer"):
        build_task("ioi", n=8)


@pytest.mark.parametrize("which", [pytest.param("smollm2", marks=pytest.mark.slow), "gpt2"])
def test_induction_repeats_the_first_half_and_resamples_it_in_the_corrupt_prompt(which, request):
    model = request.getfixturevalue(which)
    length = 8 if which == "smollm2" else 5
    task = build_task("induction", n=6, seed=0, model=model) if length == 8 else induction.make_task(6, 0, model=model, length=length)
    clean, corrupt = task.clean, task.corrupt
    assert clean.shape == (6, 2 * length) and (clean[:, 0] == model.tokenizer.bos_token_id).all()
    assert torch.equal(clean[:, length + 1 :], clean[:, 1:length]), "the second half repeats the first"
    assert torch.equal(task.answers[:, 0], clean[:, at(task, "target")])
    match = at(task, "match")
    assert torch.equal(clean[:, match], clean[:, -1]) and torch.equal(corrupt[:, match], clean[:, -1])
    assert torch.equal(task.wrong_answers[:, 0], corrupt[:, match + 1]) and (task.wrong_answers != task.answers).all()
    differ = clean != corrupt
    assert differ[:, 1 : length + 1].sum(-1).tolist() == [length - 1] * 6, "every first-half token but the match is resampled"
    assert not differ[:, length + 1 :].any() and not differ[:, match].any()
    for row in torch.cat([clean[:, 1:], corrupt[:, 1:]]):
        words = [text(model, token) for token in row]
        assert len(set(words[:length])) == length and all(w.startswith(" ") and w[1:].isalpha() for w in words)


def test_induction_is_deterministic_and_refuses_a_tiny_vocabulary(smollm2, gpt2):
    a, b = (build_task("induction", n=4, seed=7, model=smollm2) for _ in range(2))
    assert torch.equal(a.clean, b.clean) and torch.equal(a.corrupt, b.corrupt)
    assert not torch.equal(a.clean, build_task("induction", n=4, seed=8, model=smollm2).clean)
    with pytest.raises(ValueError, match=r"has \d+ ordinary word tokens .* needs 59 distinct ones"):
        induction.make_task(4, 0, model=gpt2, length=30)


def test_greater_than_reads_the_tens_digit_after_the_century(smollm2):
    task = build_task("greater-than", n=12, seed=0, model=smollm2)
    assert task.corruption == "01" and task.metric_name == "logit_diff" and n_prompts(task) == 12
    for group in task_groups(task):
        tens, units, noun, end = (at(group, label) for label in ("YY_tens", "YY_units", "NOUN", "END"))
        assert (group.positions == end).all()
        for i, yy in enumerate(group.features["yy"].long().tolist()):
            prompt = text(smollm2, group.clean[i, 1:])
            century = prompt[-2:]
            assert prompt == f"The{text(smollm2, group.clean[i, noun])} lasted from the year {century}{yy:02d} to the year {century}"
            assert text(smollm2, group.clean[i, [tens, units]]) == f"{yy:02d}"
            assert text(smollm2, group.corrupt[i, [tens, units]]) == "01"
            differ = set((group.clean[i] != group.corrupt[i]).nonzero()[:, 0].tolist())
            assert tens in differ and differ <= {tens, units}, "only YY changes"
            pairs = {(int(text(smollm2, g)), int(text(smollm2, s))) for g, s in zip(group.answers[i], group.wrong_answers[i])}
            assert pairs == {(g, s) for g in range(yy // 10 + 1, 10) for s in range(yy // 10)}, "each greater digit against each smaller"


def test_greater_than_metric_is_mean_logit_of_greater_minus_smaller_tens_digits(smollm2):
    digits = torch.tensor([smollm2.to_single_token(str(d)) for d in range(10)])
    for group in task_groups(build_task("greater-than", n=8, seed=0, model=smollm2)):
        logits = torch.randn(*group.clean.shape, smollm2.cfg.d_vocab, generator=torch.Generator().manual_seed(0))
        tens = group.features["yy"].long() // 10
        last = logits[:, -1][:, digits]  # [batch digit]
        expected = torch.stack([row[t + 1 :].mean() - row[:t].mean() for row, t in zip(last, tens.tolist())])
        torch.testing.assert_close(group.score_per_prompt(logits), expected, atol=1e-5, rtol=0)


def test_greater_than_refuses_two_digit_tokens_and_split_nouns(two_digit_model, gpt2):
    with pytest.raises(ValueError, match=r"writes ' 17\d\d' as \[' 17\d*', .*\], not one token per digit"):
        build_task("greater-than", n=2, model=two_digit_model)
    with pytest.raises(ValueError, match=r"only 0 of \d+ nouns are single tokens"):
        build_task("greater-than", n=2, model=gpt2)


def test_weekday_labels_the_day_when_templates_differ_in_length(smollm2):
    task = build_task("weekday", n=21, seed=0, model=smollm2)
    assert isinstance(task, TaskGroups) and n_prompts(task) == 21
    assert sorted({g.clean.shape[1] for g in task.groups}) == [9, 10], "'Yesterday' is two tokens in SmolLM2"
    for group in task.groups:
        day = at(group, "DAY")
        assert (group.clean[:, 0] == smollm2.tokenizer.bos_token_id).all()
        assert ((group.clean != group.corrupt).nonzero()[:, 1] == day).all()
        for clean, corrupt, answer, wrong in zip(group.clean, group.corrupt, group.answers[:, 0], group.wrong_answers[:, 0]):
            days = [" " + d for d in weekday.DAYS]
            after = {d: days[(i + 1) % 7] for i, d in enumerate(days)}
            assert text(smollm2, answer) == after[text(smollm2, clean[day])]
            assert text(smollm2, wrong) == after[text(smollm2, corrupt[day])] != text(smollm2, answer)


def test_weekday_keeps_index_positions_for_one_layout(gpt2):
    task = build_task("weekday", n=14, seed=0, model=gpt2)
    assert isinstance(task, Task) and task.labels is None and task.clean.shape == (14, 9)
    assert (task.clean[:, 0] == gpt2.tokenizer.bos_token_id).all()


def test_weekday_refuses_a_day_that_splits(smollm2, monkeypatch):
    monkeypatch.setattr(weekday, "DAYS", (*weekday.DAYS[:6], "Caturday"))
    with pytest.raises(ValueError, match=r"Task 'weekday': the day ' Caturday' is \d tokens \[' C"):
        build_task("weekday", n=7, model=smollm2)


@pytest.mark.parametrize("name", ["ioi", "induction", "greater-than", "weekday"])
def test_engine_runs_each_task_exactly(smollm2, name):
    task = build_task(name, n=6, seed=0, model=smollm2)
    groups = task_groups(task)
    with torch.no_grad():
        clean = torch.cat([g.score_per_prompt(smollm2(g.clean)) for g in groups])
        corrupt = torch.cat([g.score_per_prompt(smollm2(g.corrupt)) for g in groups])
    assert (clean - corrupt).abs().max() > 1e-6, "the random model must react to the corruption"
    columns = layout(task)
    graph = ComputeGraph.from_model(smollm2)
    half = graph.valid_at(columns) & (torch.rand(graph.valid_at(columns).shape, generator=torch.Generator().manual_seed(0)) < 0.5)
    _, full, empty = run_circuits_with_baselines(smollm2, task, half, positions=columns)
    torch.testing.assert_close(full, clean, atol=1e-5, rtol=0)
    torch.testing.assert_close(empty, corrupt, atol=1e-5, rtol=0)
    scores = attribute_edges(smollm2, task, "eap", by_pos=True)
    assert set(scores["pos"]) == set(columns.labels) and scores["score"].abs().max() > 0


@pytest.mark.parametrize("module", ["pathpatch.task.lm_tasks",
                                    "pathpatch.models.seeds.induction", "pathpatch.models.seeds.greater_than"])
def test_docstring_examples_hold(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
