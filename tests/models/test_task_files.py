"""Task files: JSONL, EAP-IG CSV, auto-circuit JSON and factories load into exact tensors; bad input names file, line, field."""

import json
import logging

import pytest
import torch

from pathpatch.models import Task, build_task, load_task
from pathpatch.task.groups import TaskGroups
from tests.conftest import make_random_model


@pytest.fixture(scope="module")
def tiny_model():
    """The random d_vocab-32 model, without a tokenizer."""
    return make_random_model()


@pytest.fixture(scope="module")
def gpt2(tiny_gpt2_dir):
    """The tiny GPT-2 with a BPE tokenizer trained on weekday sentences."""
    from pathpatch.models import load_model

    return load_model(tiny_gpt2_dir)


def write_jsonl(tmp_path, lines, name="pairs.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def pair(clean=(1, 2, 3), corrupt=(1, 5, 3), answer=7, wrong=9, **extra):
    return {"clean": list(clean), "corrupt": list(corrupt), "answer": answer, "wrong_answer": wrong, **extra}


def test_jsonl_token_ids_give_the_exact_tensors(tmp_path, tiny_model):
    path = write_jsonl(tmp_path, [pair(), pair((4, 5, 6), (4, 8, 6), [10], [11])])
    task = load_task(path, tiny_model)
    assert isinstance(task, Task) and task.name == "pairs" and task.metric == "logit_diff"
    assert torch.equal(task.clean, torch.tensor([[1, 2, 3], [4, 5, 6]]))
    assert torch.equal(task.corrupt, torch.tensor([[1, 5, 3], [4, 8, 6]]))
    assert torch.equal(task.answers, torch.tensor([[7], [10]])) and torch.equal(task.wrong_answers, torch.tensor([[9], [11]]))
    assert task.clean.dtype == torch.long


def test_default_position_is_the_last_token(tmp_path):
    task = load_task(write_jsonl(tmp_path, [pair((1, 2, 3, 4), (1, 2, 5, 4))]))
    assert task.positions.tolist() == [3]


def test_negative_positions_count_from_the_end_and_take_one_answer_each(tmp_path):
    task = load_task(write_jsonl(tmp_path, [pair((1, 2, 3, 4), (1, 2, 5, 4), [7, 8], [9, 10], positions=[-3, -1])]))
    assert task.positions.tolist() == [1, 3]
    assert task.answers.tolist() == [[7, 8]] and task.wrong_answers.tolist() == [[9, 10]]


def test_jsonl_text_matches_to_tokens_and_answer_strings_are_single_tokens(tmp_path, gpt2):
    clean, corrupt = "Today it is Monday so tomorrow it is", "Today it is Friday so tomorrow it is"
    line = {"clean": clean, "corrupt": corrupt, "answer": " Tuesday", "wrong_answer": " Saturday"}
    task = load_task(write_jsonl(tmp_path, [line]), gpt2)
    assert torch.equal(task.clean, gpt2.to_tokens(clean).cpu()) and torch.equal(task.corrupt, gpt2.to_tokens(corrupt).cpu())
    assert task.clean[0, 0] == gpt2.tokenizer.bos_token_id
    assert task.answers.tolist() == [gpt2.to_tokens(" Tuesday", prepend_bos=False)[0].tolist()]
    assert task.wrong_answers.tolist() == [gpt2.to_tokens(" Saturday", prepend_bos=False)[0].tolist()]
    assert task.positions.tolist() == [task.clean.shape[1] - 1]


def test_prompts_of_different_lengths_become_groups_in_file_order(tmp_path):
    lines = [pair((1, 2), (1, 3), 4, 5), pair((1, 2, 3), (1, 4, 3), 6, 7), pair((2, 2), (2, 3), 8, 9)]
    task = load_task(write_jsonl(tmp_path, lines))
    assert isinstance(task, TaskGroups) and task.n_prompts == 3
    short, long = task.groups
    assert short.clean.tolist() == [[1, 2], [2, 2]] and short.answers.tolist() == [[4], [8]]
    assert long.clean.tolist() == [[1, 2, 3]] and long.wrong_answers.tolist() == [[7]]


def test_header_sets_name_and_metric_and_options_override_it(tmp_path):
    path = write_jsonl(tmp_path, [{"task": {"name": "mine", "metric": "accuracy"}}, pair(wrong=None)])
    task = load_task(path)
    assert (task.name, task.metric, task.wrong_answers) == ("mine", "accuracy", None)
    overridden = load_task(path, metric="loss", name="other")
    assert (overridden.name, overridden.metric) == ("other", "loss")


def test_n_keeps_the_first_prompts_and_refuses_more_than_the_file_holds(tmp_path):
    path = write_jsonl(tmp_path, [pair(answer=1), pair(answer=2), pair(answer=3)])
    assert load_task(path, n=2).answers.tolist() == [[1], [2]]
    with pytest.raises(ValueError, match=r"n=4 prompts asked for but the file holds 3"):
        load_task(path, n=4)


def test_same_file_gives_identical_tensors(tmp_path, gpt2):
    path = write_jsonl(tmp_path, [{"clean": "Today it is Monday", "corrupt": "Today it is Friday", "answer": " so", "wrong_answer": " it"}])
    a, b = load_task(path, gpt2), load_task(path, gpt2)
    assert torch.equal(a.clean, b.clean) and torch.equal(a.answers, b.answers)


def test_vector_prompts_give_an_mse_task(tmp_path):
    line = {"clean": [[0.0, 1.0], [1.0, 0.5]], "corrupt": [[0.0, 1.0], [0.0, 0.0]], "answer": [[0.5, 0.5]]}
    task = load_task(write_jsonl(tmp_path, [line]))
    assert task.metric == "mse" and task.clean.dtype == torch.float32 and task.wrong_answers is None
    assert task.clean.tolist() == [[[0.0, 1.0], [1.0, 0.5]]] and task.answers.tolist() == [[[0.5, 0.5]]]


# EAP-IG's ioi_llama.csv header (pandas index column first), with sentences the tiny tokenizer knows.
EAP_CSV = (
    ",clean,corrupted,corrupted_hard,correct_idx,incorrect_idx\n"
    '470,"Today it is Monday, so tomorrow it is","Today it is Friday, so tomorrow it is","Today it is Sunday, so tomorrow it is",5,6\n'
    "184,Today it is Monday,Today it is Friday,Today it is Sunday,7,8\n"
)


def test_eap_ig_csv_reads_ids_and_reads_the_last_token(tmp_path, gpt2):
    path = tmp_path / "ioi.csv"
    path.write_text(EAP_CSV)
    task = load_task(path, gpt2)
    assert isinstance(task, TaskGroups)
    long, short = task.groups
    assert torch.equal(long.clean, gpt2.to_tokens("Today it is Monday, so tomorrow it is", prepend_bos=True).cpu())
    assert torch.equal(short.corrupt, gpt2.to_tokens("Today it is Friday", prepend_bos=True).cpu())
    assert (long.answers.tolist(), long.wrong_answers.tolist()) == ([[5]], [[6]])
    assert (short.answers.tolist(), short.wrong_answers.tolist()) == ([[7]], [[8]])
    assert short.positions.tolist() == [short.clean.shape[1] - 1]


def test_auto_circuit_json_reads_one_answer_each(tmp_path, gpt2):
    data = {"word_idxs": {"IO": 2}, "prompts": [
        {"clean": "Today it is Monday so tomorrow it is", "corrupt": "Today it is Friday so tomorrow it is",
         "answers": [" Tuesday"], "wrong_answers": [" Saturday"]},
    ]}
    path = tmp_path / "days.json"
    path.write_text(json.dumps(data, indent=2))
    task = load_task(path, gpt2)
    assert torch.equal(task.clean, gpt2.to_tokens("Today it is Monday so tomorrow it is", prepend_bos=True).cpu())
    assert task.answers.tolist() == [gpt2.to_tokens(" Tuesday", prepend_bos=False)[0].tolist()]


def test_auto_circuit_token_ids_are_taken_as_given(tmp_path):
    path = tmp_path / "ids.json"
    path.write_text(json.dumps({"prompts": [{"clean": [1, 2], "corrupt": [1, 3], "answers": [4], "wrong_answers": [5]}]}))
    task = load_task(path)
    assert (task.clean.tolist(), task.answers.tolist(), task.wrong_answers.tolist()) == ([[1, 2]], [[4]], [[5]])


def test_auto_circuit_without_prompts_is_refused(tmp_path):
    path = tmp_path / "flat.json"
    path.write_text(json.dumps([{"clean": [1], "corrupt": [2]}]))
    with pytest.raises(ValueError, match=r"flat.json:1: field 'prompts': missing or not a list"):
        load_task(path)


def test_auto_circuit_several_answers_are_refused_with_prompt_and_line(tmp_path):
    path = tmp_path / "many.json"
    prompts = [{"clean": [1, 2], "corrupt": [1, 3], "answers": [4], "wrong_answers": [5]},
               {"clean": [1, 2], "corrupt": [1, 3], "answers": [4, 6], "wrong_answers": [5]}]
    path.write_text(json.dumps({"prompts": prompts}, indent=2))
    line = [number for number, text in enumerate(path.read_text().split("\n"), start=1) if text == "    {"][1]
    with pytest.raises(ValueError, match=rf"many.json:{line}: prompts\[1\]: field 'answers': lists 2 tokens; pathpatch takes one answer"):
        load_task(path)


FACTORY = """
import torch
from pathpatch.task.task import Task

def make(n, seed, model=None):
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, 32, (n, 3), generator=g)
    return Task("made", clean, clean.flip(0), clean[:, -1:], clean.flip(0)[:, -1:], torch.tensor([2]))

def not_a_task(n, seed):
    return [n, seed]
"""


def test_factory_file_is_called_with_n_and_seed_and_logged(tmp_path, caplog):
    path = tmp_path / "factory.py"
    path.write_text(FACTORY)
    with caplog.at_level(logging.WARNING, logger="pathpatch.models.task_files"):
        task = load_task(f"{path}:make", n=5, seed=3)
    assert caplog.records[-1].levelno == logging.WARNING
    assert task.name == "made" and task.clean.shape == (5, 3)
    assert torch.equal(task.clean, torch.randint(0, 32, (5, 3), generator=torch.Generator().manual_seed(3)))
    assert str(path) in caplog.text
    with pytest.raises(TypeError, match=r"factory.py:not_a_task' returned a list"):
        load_task(f"{path}:not_a_task")


def test_module_factory_gets_the_model_when_it_takes_one(tmp_path, monkeypatch, caplog, tiny_model):
    (tmp_path / "my_factories.py").write_text(FACTORY + "\ndef with_model(n, seed, model):\n    return make(model.cfg.d_vocab, seed)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="pathpatch.models.task_files"):
        assert load_task("my_factories:with_model", tiny_model, n=2).clean.shape == (32, 3)
    assert "my_factories.py" in caplog.text


def test_bundled_names_and_task_objects():
    task = load_task("permute", n=4, seed=1)
    assert torch.equal(task.clean, build_task("permute", n=4, seed=1).clean)
    assert load_task(task) is task
    assert load_task(task, name="renamed").name == "renamed"


def test_unknown_spec_lists_bundled_tasks_and_file_forms():
    with pytest.raises(KeyError, match=r"permute.*NAME\.jsonl.*EAP-IG.*auto-circuit.*file\.py:function"):
        load_task("no-such-task")


BAD_JSONL = [
    ("not json", ["invalid JSON"]),
    ("# a comment", ["'#' comment", "JSONL has no comments"]),
    ("[1, 2]", ["is not a prompt object"]),
    ({"corrupt": [1], "answer": 1, "wrong_answer": 2}, ["field 'clean'", "missing"]),
    ({**pair(), "answers": 1}, ["field 'answers'", "unknown", "wrong_answer"]),
    (pair(answer=True), ["field 'answer'", "bool True", "int token id"]),
    (pair(clean=(1, True, 3)), ["field 'clean'", "list of bool, int"]),
    (pair(answer=32), ["field 'answer'", "token id 32", "0..31"]),
    (pair(clean=(1, 40, 3)), ["field 'clean'", "token id 40"]),
    (pair(corrupt=(1, 2)), ["field 'corrupt'", "clean has 3 positions but corrupt has 2", "equal lengths"]),
    (pair(answer=[1, 2]), ["field 'answer'", "gives 2 tokens", "reads 1 positions"]),
    (pair(positions=3), ["field 'positions'", "position 3 is outside a prompt of 3", "-3..-1"]),
    (pair(positions=[]), ["field 'positions'", "an empty list"]),
    ({"clean": "hi", "corrupt": "ho", "answer": 1, "wrong_answer": 2}, ["field 'clean'", "the model has no tokenizer"]),
    ({"clean": [[0.0] * 31 + [float("nan")]], "corrupt": [[0.0] * 32], "answer": [[1.0] * 32]}, ["field 'clean'", "NaN or inf"]),
    ({"clean": [[0.0] * 32], "corrupt": [[0.0]], "answer": [[1.0] * 32]}, ["field 'corrupt'", "has 1 numbers but 32"]),
    ({"task": {"metric": "bleu"}}, ["field 'metric'", "unknown metric 'bleu'", "logit_diff"]),
    ({"task": {"colour": "red"}}, ["field 'task.colour'"]),
    (pair(wrong=None), ["field 'wrong_answer'", "missing", "logit_diff"]),
    ({"task": {"metric": "mse"}}, ["field 'metric'", "'mse' does not fit ids prompts"]),
    (pair(positions=[0, 2], answer=[1, 2], wrong=[True, 2]), ["field 'wrong_answer'", "item 0 is bool True"]),
]


@pytest.mark.parametrize("line,expected", BAD_JSONL, ids=[str(i) for i in range(len(BAD_JSONL))])
def test_malformed_jsonl_line_names_file_line_and_field(tmp_path, tiny_model, line, expected):
    path = write_jsonl(tmp_path, [pair(), "", line], name="bad.jsonl")
    if isinstance(line, dict) and "task" in line:  # a header must come first: put it on line 3 after blank lines
        path = write_jsonl(tmp_path, ["", "", line, pair()], name="bad.jsonl")
    with pytest.raises(ValueError) as error:
        load_task(path, tiny_model)
    message = str(error.value)
    assert "bad.jsonl:3:" in message, message
    for part in expected:
        assert part in message, message


def test_header_after_a_prompt_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"late.jsonl:2: field 'task': a header must be the first line"):
        load_task(write_jsonl(tmp_path, [pair(), {"task": {"name": "x"}}], name="late.jsonl"))


def test_vector_sizes_must_agree_between_lines_without_a_model(tmp_path):
    lines = [{"clean": [[0.0, 1.0]], "corrupt": [[1.0, 0.0]], "answer": [[0.0, 1.0]]},
             {"clean": [[0.0, 1.0, 2.0]], "corrupt": [[1.0, 0.0, 2.0]], "answer": [[0.0, 1.0, 2.0]]}]
    with pytest.raises(ValueError, match=r"vec.jsonl:2: field 'clean': vectors have 3 numbers but the first prompt's .* have 2"):
        load_task(write_jsonl(tmp_path, lines, name="vec.jsonl"))


def test_unknown_factory_module_and_missing_file_are_named():
    with pytest.raises(ValueError, match=r"'no_such_module_xyz:make'.*install it"):
        load_task("no_such_module_xyz:make")
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl does not exist"):
        load_task("missing.jsonl")


def test_mixing_text_and_ids_between_lines_is_refused(tmp_path, gpt2):
    path = write_jsonl(tmp_path, [pair(), {"clean": "Today", "corrupt": "Today", "answer": 1, "wrong_answer": 2}], name="mix.jsonl")
    with pytest.raises(ValueError, match=r"mix.jsonl:2: field 'clean': is text but the first prompt \(.*mix.jsonl:1\) is ids"):
        load_task(path, gpt2)


def test_multi_token_answer_says_how_many_tokens(tmp_path, gpt2):
    line = {"clean": "Today it is", "corrupt": "Today it was", "answer": " Monday Tuesday", "wrong_answer": " so"}
    with pytest.raises(ValueError, match=r"multi.jsonl:1: field 'answer': ' Monday Tuesday' is 2 tokens"):
        load_task(write_jsonl(tmp_path, [line], name="multi.jsonl"), gpt2)


@pytest.mark.parametrize("text,expected", [
    ("", ["empty.jsonl:1:", "no prompt pairs"]),
    ("\n\n" + json.dumps({"task": {"name": "x"}}) + "\n", ["empty.jsonl:1:", "no prompt pairs"]),
])
def test_empty_file_is_refused(tmp_path, text, expected):
    path = tmp_path / "empty.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        load_task(path)
    assert all(part in str(error.value) for part in expected), str(error.value)


@pytest.mark.parametrize("body,expected", [
    ("clean,corrupted,label\na,b,52\n", ["bad.csv:1:", "field 'correct_idx'", "column missing", "greater-than"]),
    (",clean,corrupted,correct_idx,incorrect_idx\n0,a,b,1,2\n1,c,d, Mary,3\n", ["bad.csv:3:", "field 'correct_idx'", "one token id"]),
    ("clean,corrupted,correct_idx,incorrect_idx\nToday,Today,1,1000000\n", ["bad.csv:2:", "field 'incorrect_idx'", "token id 1000000"]),
    (",clean,corrupted,correct_idx,incorrect_idx\n0,\"Today\nMonday\",\"Today\nFriday\",1,2\n1,,d,1,3\n",
     ["bad.csv:5:", "field 'clean'", "missing"]),
])
def test_malformed_eap_ig_csv_names_file_line_and_column(tmp_path, gpt2, body, expected):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(ValueError) as error:
        load_task(path, gpt2)
    assert all(part in str(error.value) for part in expected), str(error.value)
