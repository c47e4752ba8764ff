"""A user's own model and prompts through the command line alone: state dict + config, JSONL, hypothesis files.

The models here are not reached through bundled names: each is written to disk as a user would have
it (a ``.pt`` state dict beside ``config.json``, or a checkpoint folder with a tokenizer), and every
step runs through ``pathpatch.cli.main`` as the README describes it.
"""

import json
import logging

import pytest
import torch

from pathpatch.circuit.circuit import from_json
from pathpatch.cli import main
from pathpatch.models import build_task, load_model


def write_jsonl(path, task, header: dict | None = None) -> None:
    """Write a same-length token task as JSONL of token ids (the format a user's own generator emits)."""
    lines = [json.dumps({"task": header})] if header else []
    for i in range(task.clean.shape[0]):
        lines.append(json.dumps({"clean": task.clean[i].tolist(), "corrupt": task.corrupt[i].tolist(),
                                 "answer": task.answers[i].tolist(), "wrong_answer": task.wrong_answers[i].tolist(),
                                 "positions": task.positions.tolist()}))
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def user_permute(tmp_path_factory):
    """An attention-only model without LayerNorm as a user has it: weights.pt + config.json + prompts.jsonl."""
    folder = tmp_path_factory.mktemp("user-permute")
    model = load_model("permute")
    torch.save(model.state_dict(), folder / "weights.pt")
    (folder / "config.json").write_text(json.dumps(model.cfg.to_dict(), default=str))
    write_jsonl(folder / "prompts.jsonl", build_task("permute", n=24, seed=3, corruption="values"), {"name": "my-permute"})
    (folder / "circuit.toml").write_text("""
model = "weights.pt"
model_config = "config.json"
task = "prompts.jsonl"

[method]
threshold = 0.05
bootstrap = 50

[[claim]]
name = "value moves by V-composition"
kind = "path"
nodes = ["embed", "L0H0.v", "L0H0", "L1H0.v", "L1H0", "logits"]
min_effect = 0.5

[[claim]]
kind = "faithfulness"
min = 0.9
""")
    return folder


def test_discover_on_a_state_dict_with_its_config_and_jsonl_prompts(user_permute, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["discover", "--model", str(user_permute / "weights.pt"), "--config", str(user_permute / "config.json"),
                 "--task", str(user_permute / "prompts.jsonl"), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    circuit = from_json(out / "circuit.json")
    assert {"L0H0->L1H0.v", "L1H0->logits"} <= set(circuit.scored_edges)
    assert circuit.task_name == "my-permute" and circuit.info["n"] == 24
    assert "24 prompts" in capsys.readouterr().out
    assert (out / "report.md").read_text().count("L0H0->L1H0.v") == 1
    assert (out / "circuit.dot").exists()


def test_check_a_hypothesis_file_that_names_the_users_files_by_relative_path(user_permute, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths resolve against the hypothesis file, not the working directory
    assert main(["check", str(user_permute / "circuit.toml"), "--out", "check"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "value moves by V-composition" in out
    assert json.loads((tmp_path / "check" / "check.json").read_text())["claims"][0]["passed"]


def test_a_false_claim_about_the_users_model_exits_1(user_permute, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    text = (user_permute / "circuit.toml").read_text().replace('"weights.pt"', f'"{user_permute / "weights.pt"}"')
    text = text.replace('"config.json"', f'"{user_permute / "config.json"}"').replace('"prompts.jsonl"', f'"{user_permute / "prompts.jsonl"}"')
    bad.write_text(text.replace('"L0H0.v", "L0H0", "L1H0.v"', '"L0H0.q", "L0H0", "L1H0.v"'))
    assert main(["check", str(bad)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_check_overrides_the_files_model_and_task_from_the_command_line(user_permute, tmp_path, capsys):
    other = tmp_path / "fewer.jsonl"
    lines = (user_permute / "prompts.jsonl").read_text().splitlines()
    other.write_text("\n".join(lines[1:9]) + "\n")  # no header: the task is named after the file
    assert main(["check", str(user_permute / "circuit.toml"), "--task", str(other)]) == 0
    assert "fewer" in capsys.readouterr().out


@pytest.fixture(scope="module")
def user_gpt2(tiny_gpt2_dir, tmp_path_factory):
    """A model with LayerNorm and MLPs saved as a TransformerLens checkpoint with its tokenizer, text prompts."""
    folder = tmp_path_factory.mktemp("user-gpt2")
    assert main(["save", "--model", str(tiny_gpt2_dir), str(folder / "model")]) == 0
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    rows = []
    for i, day in enumerate(days):
        nxt, other = days[(i + 1) % 7], days[(i + 3) % 7]
        rows.append({"clean": f"Today it is {day} so tomorrow it is", "corrupt": f"Today it is {other} so tomorrow it is",
                     "answer": f" {nxt}", "wrong_answer": f" {days[(i + 4) % 7]}"})
        rows.append({"clean": f"If today is {day} then tomorrow it is", "corrupt": f"If today is {other} then tomorrow it is",
                     "answer": f" {nxt}", "wrong_answer": f" {days[(i + 4) % 7]}"})
        rows.append({"clean": f"After {day} comes", "corrupt": f"After {other} comes", "answer": f" {nxt}", "wrong_answer": f" {other}"})
    (folder / "days.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (folder / "days.toml").write_text("""
model = "model"
task = "days.jsonl"
[method]
bootstrap = 20
threshold = 0.02
[[claim]]
name = "the circuit's faithfulness, recorded"
kind = "faithfulness"
report = true
""")
    return folder


def test_text_prompts_of_different_lengths_on_a_checkpoint_with_a_tokenizer(user_gpt2, tmp_path, capsys):
    model = load_model(user_gpt2 / "model")
    lengths = {model.to_tokens(json.loads(line)["clean"]).shape[1] for line in (user_gpt2 / "days.jsonl").read_text().splitlines()}
    assert len(lengths) > 1  # the case that needs length groups
    assert main(["discover", "--model", str(user_gpt2 / "model"), "--task", str(user_gpt2 / "days.jsonl"), "--top-k", "10",
                 "--out", str(tmp_path / "run")]) == 0
    assert "21 prompts" in capsys.readouterr().out
    assert len(from_json(tmp_path / "run" / "circuit.json").scored_edges) >= 1
    assert main(["check", str(user_gpt2 / "days.toml")]) == 0


def test_a_python_factory_model_says_which_file_runs(user_permute, tmp_path, caplog, capsys):
    factory = tmp_path / "make.py"
    factory.write_text(f"from pathpatch.models import load_model\n\ndef build():\n"
                       f"    return load_model({str(user_permute / 'weights.pt')!r}, config={str(user_permute / 'config.json')!r})\n")
    with caplog.at_level(logging.WARNING):
        code = main(["discover", "--model", f"{factory}:build", "--task", str(user_permute / "prompts.jsonl"), "--top-k", "3",
                     "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    assert str(factory) in caplog.text


@pytest.mark.parametrize("argv, message", [
    (["discover", "--model", "permute", "--top-k", "0", "--out", "x"], "top_k=0"),
    (["discover", "--model", "permute", "--out", ""], "--out is empty"),
    (["discover", "--model", "no-such-model", "--out", "x"], "Unknown model 'no-such-model'"),
    (["discover", "--model", "permute", "--task", "nope.jsonl", "--out", "x"], "nope.jsonl"),
])
def test_bad_command_lines_exit_2_naming_the_value(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
