"""Fuzzing the command line: every bad input gives one error line naming the bad value, the right exit code, no traceback.

Each case runs ``pathpatch.cli.main`` in-process on a hostile argument, hypothesis file, circuit file,
prompt file or model folder, and checks the exit code (2: bad input), that stderr's one error line
names the offending value, and that no traceback is printed.
"""

import copy
import json
import os

import pytest
import torch

from pathpatch.cli import main
from pathpatch.errors import InputError

TOML_BASE = 'model = "permute"\ntask = "permute"\n'
FAITH = '[[claim]]\nkind = "faithfulness"\nmin = 0.5\n'


def run(argv: list[str], capsys) -> tuple[int, str]:
    """Run the command line; return the exit code and stderr (argparse's usage errors exit via SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


def assert_error(code: int, err: str, expected_code: int, named: str) -> str:
    """One ``pathpatch ...: error:`` line naming ``named``, no traceback, and ``expected_code``; return the line."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith("pathpatch"), err
    assert named in errors[0], f"{named!r} not in {errors[0]!r}"
    assert code == expected_code, (code, err)
    return errors[0]


# --- arguments -------------------------------------------------------------------------------------------------

ARGUMENTS = [
    (["discover", "--model", "no-such-model", "--out", "x"], "Unknown model 'no-such-model'"),
    (["discover", "--model", "permute", "--task", "nope", "--out", "x"], "Unknown task 'nope'"),
    (["discover", "--model", "permute", "--task", "missing.jsonl", "--out", "x"], "missing.jsonl"),
    (["discover", "--model", "permute", "--device", "tpu", "--out", "x"], "--device 'tpu'"),
    (["discover", "--model", "permute", "--device", "cuda:7", "--out", "x"], "--device 'cuda:7'"),
    (["discover", "--model", "permute", "--device", "", "--out", "x"], "--device ''"),
    (["discover", "--model", "permute", "--device", "xla", "--out", "x"], "--device 'xla'"),
    (["discover", "--model", "permute", "--n", "0", "--out", "x"], "--n 0"),
    (["discover", "--model", "permute", "--n", "-1", "--out", "x"], "--n -1"),
    (["discover", "--model", "permute", "--n", "200000000", "--out", "x"], "--n 200000000"),
    (["discover", "--model", "permute", "--n", "many", "--out", "x"], "'many'"),
    (["discover", "--model", "permute", "--top-k", "0", "--out", "x"], "top_k=0"),
    (["discover", "--model", "permute", "--top-k", "-3", "--out", "x"], "top_k=-3"),
    (["discover", "--model", "permute", "--threshold", "nan", "--out", "x"], "'nan' is not a finite number"),
    (["discover", "--model", "permute", "--threshold", "inf", "--out", "x"], "'inf' is not a finite number"),
    (["discover", "--model", "permute", "--threshold", "-1", "--out", "x"], "threshold=-1.0"),
    (["discover", "--model", "permute", "--method", "eap-ig", "--steps", "0", "--out", "x"], "--steps 0"),
    (["discover", "--model", "permute", "--method", "eap-ig", "--steps", "100000", "--out", "x"], "--steps 100000"),
    (["discover", "--model", "permute", "--metric", "f1", "--out", "x"], "'f1'"),
    (["discover", "--model", "permute", "--method", "magic", "--out", "x"], "'magic'"),
    (["discover", "--model", "permute", "--seed", "-1", "--out", "x"], "seed=-1"),
    (["discover", "--model", "permute", "--out", ""], "--out is empty"),
    (["discover", "--model", "permute", "--out", "   "], "--out is empty"),
    (["discover", "--model", "permute", "--task-corruption", "scramble", "--out", "x"], "'scramble'"),
    (["discover", "--model", "permute", "--config", "c.json", "--out", "x"], "config= was given"),
    (["discover", "--model", "permute", "--corruption", "mean", "--direction", "denoise", "--out", "x"], "'mean'"),
    (["discover", "--model", "permute", "--threshold", "50", "--n", "8", "--out", "x"], "lower --threshold"),
    (["train", "permute", "--steps", "0"], "--steps 0"),
    (["train", "permute", "--steps", "-1"], "--steps -1"),
    (["train", "permute", "--device", "tpu"], "--device 'tpu'"),
    (["train", "permute", "--steps", "1", "--out", " "], "--out is empty"),
    (["train", "gpt5"], "'gpt5'"),
    (["demo", "--n", "0"], "--n 0"),
    (["demo", "--device", "cuda:7"], "--device 'cuda:7'"),
    (["demo", "--model", "nope"], "'nope'"),
    (["check", "missing.toml"], "missing.toml"),
    (["check", "missing.toml", "--device", "tpu"], "--device 'tpu'"),
    (["check", "missing.toml", "--out", ""], "--out is empty"),
    (["draw", "missing.json"], "missing.json"),
    (["save", "--model", "no-such-model", "saved"], "'no-such-model'"),
    (["save", "--model", "permute", ""], "--out is empty"),
    (["discover"], "--model"),
    (["frobnicate"], "'frobnicate'"),
]


@pytest.mark.parametrize("argv, named", ARGUMENTS, ids=[" ".join(a)[:60] for a, _ in ARGUMENTS])
def test_bad_arguments_exit_2_naming_the_value(argv, named, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert_error(*run(argv, capsys), 2, named)


# --- hypothesis files --------------------------------------------------------------------------------------------

HYPOTHESES = [
    ('model = 3\ntask = "permute"\n' + FAITH, "'model' must be a non-empty string"),
    ('model = ""\ntask = "permute"\n' + FAITH, "'model' must be a non-empty string"),
    ('model = "permute"\ntask = []\n' + FAITH, "'task' must be a non-empty string"),
    (TOML_BASE + "model_config = 1\n" + FAITH, "'model_config' must be a string"),
    (TOML_BASE + "name = 5\n" + FAITH, "'name' = 5"),
    (TOML_BASE + "description = true\n" + FAITH, "'description' = True"),
    (TOML_BASE + "colour = 1\n" + FAITH, "unknown top-level keys ['colour']"),
    (TOML_BASE + "method = 3\n" + FAITH, "'method' = 3"),
    (TOML_BASE + "[method]\nscoring = 1\n" + FAITH, "scoring = 1"),
    (TOML_BASE + '[method]\nscoring = "magic"\n' + FAITH, "scoring 'magic'"),
    (TOML_BASE + '[method]\ndirection = "up"\n' + FAITH, "direction 'up'"),
    (TOML_BASE + "[method]\ncorruption = 0\n" + FAITH, "corruption = 0"),
    (TOML_BASE + "[method]\ntask_corruption = 5\n" + FAITH, "task_corruption = 5"),
    (TOML_BASE + '[method]\nmetric = "f1"\n' + FAITH, "metric 'f1'"),
    (TOML_BASE + "[method]\nmetric = 1\n" + FAITH, "metric = 1"),
    (TOML_BASE + "[method]\nthreshold = nan\n" + FAITH, "threshold = nan"),
    (TOML_BASE + "[method]\nthreshold = inf\n" + FAITH, "threshold = inf"),
    (TOML_BASE + '[method]\nthreshold = "0.1"\n' + FAITH, "threshold = '0.1'"),
    (TOML_BASE + "[method]\nthreshold = true\n" + FAITH, "threshold = True"),
    (TOML_BASE + "[method]\nthreshold = 20.0\n" + FAITH, "threshold 20.0 is out of range"),
    (TOML_BASE + '[method]\nrelative = "yes"\n' + FAITH, "relative = 'yes'"),
    (TOML_BASE + "[method]\nn = 0\n" + FAITH, "n = 0"),
    (TOML_BASE + "[method]\nn = 1.5\n" + FAITH, "n = 1.5"),
    (TOML_BASE + "[method]\nn = true\n" + FAITH, "n = True"),
    (TOML_BASE + "[method]\nn = nan\n" + FAITH, "n = nan"),
    (TOML_BASE + "[method]\nn = 200000000\n" + FAITH, "n 200000000 is out of range"),
    (TOML_BASE + "[method]\nbootstrap = -1\n" + FAITH, "bootstrap = -1"),
    (TOML_BASE + "[method]\nbootstrap = 10000000\n" + FAITH, "bootstrap 10000000 is out of range"),
    (TOML_BASE + '[method]\nseed = "0"\n' + FAITH, "seed = '0'"),
    (TOML_BASE + '[method]\ngranularity = "pos"\n' + FAITH, "granularity = 'pos'; use \"edge\""),
    (TOML_BASE + "[method]\ncolour = 1\n" + FAITH, "unknown [method] keys ['colour']"),
    (TOML_BASE, "has no claims"),
    (TOML_BASE + "claim = 1\n", "'claim' = 1"),
    (TOML_BASE + "claim = []\n", "has no claims"),
    (TOML_BASE + "[[claim]]\nmin = 0.5\n", "needs a kind"),
    (TOML_BASE + "[[claim]]\nkind = 3\nmin = 0.5\n", "unknown claim kind 3"),
    (TOML_BASE + '[[claim]]\nkind = "telepathy"\n', "unknown claim kind 'telepathy'"),
    (TOML_BASE + '[[claim]]\nkind = ["path"]\n', "unknown claim kind ['path']"),
    (TOML_BASE + '[[claim]]\nkind = "faithfulness"\nmin = nan\n', "got nan"),
    (TOML_BASE + '[[claim]]\nkind = "faithfulness"\nmin = "0.5"\n', "got '0.5'"),
    (TOML_BASE + '[[claim]]\nkind = "faithfulness"\nmin = true\n', "got True"),
    (TOML_BASE + '[[claim]]\nkind = "faithfulness"\nmin = 1.5\n', "min = 1.5 is out of range"),
    (TOML_BASE + '[[claim]]\nkind = "faithfulness"\nmin = 0.5\ncolour = "red"\n', "unknown keys ['colour']"),
    (TOML_BASE + '[[claim]]\nkind = "faithfulness"\nmin = 0.5\nname = 5\n', "name = 5"),
    (TOML_BASE + '[[claim]]\nkind = "effect"\nedge = "L0H0->L1H0.v"\n', "give exactly one bound"),
    (TOML_BASE + '[[claim]]\nkind = "effect"\nedge = "L0H0->L1H0.v"\nnode = "L0H0"\nmin = 0.1\n', "exactly one of edge"),
    (TOML_BASE + '[[claim]]\nkind = "effect"\nedge = 5\nmin = 0.1\n', "edge = 5"),
    (TOML_BASE + '[[claim]]\nkind = "effect"\nnode = ""\nmin = 0.1\n', "node = ''"),
    (TOML_BASE + '[[claim]]\nkind = "effect"\nnode = "L0H0"\nmin = -inf\n', "got -inf"),
    (TOML_BASE + '[[claim]]\nkind = "path"\nnodes = "embed"\nmin_effect = 0.5\n', "nodes = 'embed'"),
    (TOML_BASE + '[[claim]]\nkind = "path"\nnodes = ["embed"]\nmin_effect = 0.5\n', "nodes = ['embed']"),
    (TOML_BASE + '[[claim]]\nkind = "path"\nnodes = []\nmin_effect = 0.5\n', "nodes = []"),
    (TOML_BASE + '[[claim]]\nkind = "path"\nnodes = ["embed", 3]\nmin_effect = 0.5\n', "nodes = ['embed', 3]"),
    (TOML_BASE + '[[claim]]\nkind = "path"\nnodes = ["embed", "logits"]\nmin_effect = nan\n', "min_effect must be a finite number, got nan"),
    (TOML_BASE + '[[claim]]\nkind = "path"\nnodes = ["embed", "logits"]\nmin_effect = "high"\n', "got 'high'"),
    (TOML_BASE + '[[claim]]\nkind = "head_role"\nhead = "L0H0"\nrole = "poet"\nmin = 0.5\n', "unknown role 'poet'"),
    (TOML_BASE + '[[claim]]\nkind = "head_role"\nhead = "L0H0"\nrole = 1\nmin = 0.5\n', "role = 1"),
    (TOML_BASE + '[[claim]]\nkind = "head_role"\nhead = 0\nrole = "previous_token"\nmin = 0.5\n', "head = 0"),
    (TOML_BASE + '[[claim]]\nkind = "head_role"\nhead = "L0H0"\nrole = "previous_token"\nmin = 0.5\nmax = 0.9\n', "exactly one bound of min, max, abs_min, abs_max"),
    (TOML_BASE + '[[claim]]\nkind = "head_role"\nhead = "L0H0"\nrole = "previous_token"\nmax = "x"\n', "got 'x'"),
    (TOML_BASE + '[[claim]]\nkind = "head_role"\nhead = "L0H0"\nrole = "previous_token"\nmin = 2.0\n', "min = 2 is out of range"),
    (TOML_BASE + '[[claim]]\nkind = "head_role"\nhead = "L0H0"\nrole = "attends_to"\noffset = 1.5\nmin = 0.5\n', "offset = 1.5"),
    (TOML_BASE + '[[claim]]\nkind = "head_role"\nhead = "L0H0"\nrole = "attends_to"\ntoken = -1\nmin = 0.5\n', "token = -1"),
    (TOML_BASE + '[[claim]]\nkind = "head_role"\nhead = "L0H0"\nrole = "attends_to"\ntoken = true\nmin = 0.5\n', "token = True"),
    (TOML_BASE + '[[claim]]\nkind = "head_role"\nhead = "L0H0"\nrole = "attends_to"\nmin = 0.5\n', "exactly one of offset"),
    (TOML_BASE + '[[claim]]\nkind = "head_role"\nhead = "L0H0"\nrole = "previous_token"\npositions = "some"\nmin = 0.5\n', "positions = 'some'"),
    (TOML_BASE + '[[claim]]\nkind = "head_role"\nhead = "L0H0"\nrole = "copying"\nspace = "colour"\nmin = 0.5\n', "space = 'colour'"),
    (TOML_BASE + '[[claim]]\nkind = "composition"\nsrc = "L0H0"\ndest = "L1H0"\ntype = "x"\nmin = 0.5\n', "type = 'x'"),
    (TOML_BASE + '[[claim]]\nkind = "composition"\nsrc = 1\ndest = "L1H0"\ntype = "v"\nmin = 0.5\n', "src = 1"),
    (TOML_BASE + '[[claim]]\nkind = "virtual_ov"\nheads = []\nmin = 0.5\n', "heads = []"),
    (TOML_BASE + '[[claim]]\nkind = "virtual_ov"\nheads = "L0H0"\nmin = 0.5\n', "heads = 'L0H0'"),
    (TOML_BASE + '[[claim]]\nkind = "virtual_ov"\nheads = [1, 2]\nmin = 0.5\n', "heads = [1, 2]"),
    (TOML_BASE + '[[claim]]\nkind = "virtual_ov"\nheads = ["L0H0", "L1H0"]\nmin = 2\n', "min = 2 is out of range"),
    (TOML_BASE + '[[claim]]\nkind = "ablation"\nmin = 0.5\n', "give exactly one of head = \"L0H1\" or node"),
    ("model = [", "not valid TOML"),
    ("model = permute\n", "not valid TOML"),
    ('model = "permute"\ntask = "permute"\n[method]\nn = 8\n[[claim]]\nkind = "effect"\nedge = "L0H0->L7H0.v"\nmin = 0.1\n', "Unknown node 'L7H0.v'"),
    ('model = "permute"\ntask = "permute"\n[method]\nn = 8\n[[claim]]\nkind = "path"\nnodes = ["embed", "L9H9", "logits"]\nmin_effect = 0.1\n',
     "Unknown node 'L9H9'"),
    (TOML_BASE + "a = " + "[" * 100_000 + "]" * 100_000 + "\n", "deeper than TOML can be read"),
]


@pytest.mark.parametrize("text, named", HYPOTHESES, ids=[f"toml{i}" for i in range(len(HYPOTHESES))])
def test_malformed_hypothesis_files_exit_2_naming_the_value(text, named, tmp_path, capsys):
    path = tmp_path / "h.toml"
    path.write_text(text)
    assert_error(*run(["check", str(path)], capsys), 2, named)


def test_a_hypothesis_file_that_is_not_utf8_or_too_large_or_a_folder_is_refused_before_parsing(tmp_path, capsys):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'model = "\xff\xfe"\n')
    assert_error(*run(["check", str(binary)], capsys), 2, "is not UTF-8 text")
    huge = tmp_path / "huge.toml"
    with huge.open("wb") as f:
        f.truncate(60 * 2**20)  # sparse: 60 MB on paper, nothing on disk
    assert_error(*run(["check", str(huge)], capsys), 2, "limited to 50 MB")
    assert_error(*run(["check", str(tmp_path)], capsys), 2, "is a folder")


# --- circuit files -------------------------------------------------------------------------------------------------

def permute_circuit() -> dict:
    """The node-link data of a small circuit of the permute model (2 layers, 1 head, attention only)."""
    def node(name, kind, layer, head, stage):
        return {"id": name, "kind": kind, "layer": layer, "head": head, "stage": stage, "pos": -1, "hook": "h"}

    nodes = [node("embed", "embed", -1, None, 0), node("L0H0.v", "head_input", 0, 0, 1), node("L0H0", "head", 0, 0, 1),
             node("L1H0.v", "head_input", 1, 0, 3), node("L1H0", "head", 1, 0, 3), node("logits", "logits", 2, None, 5)]
    scored = [("embed", "L0H0.v", 2.0), ("L0H0", "L1H0.v", 1.5), ("L1H0", "logits", 3.0)]
    edges = [{"source": s, "target": t, "kind": "edge", "score": v, "normalized": v / 3, "channel": "", "method": "exact-noise"} for s, t, v in scored]
    edges += [{"source": "L0H0.v", "target": "L0H0", "kind": "internal"}, {"source": "L1H0.v", "target": "L1H0", "kind": "internal"}]
    graph = {"model": "permute", "task": "permute", "method": "exact-noise", "n_layers": 2, "n_heads": 1, "attn_only": True, "parallel": False}
    return {"directed": True, "multigraph": False, "graph": graph, "nodes": nodes, "edges": edges}


def mutate(path: str, value):
    """Return the permute circuit with the item at ``path`` (keys and indices joined by '/') set to ``value``."""
    data = copy.deepcopy(permute_circuit())
    *parents, last = [int(p) if p.isdigit() else p for p in path.split("/")]
    target = data
    for key in parents:
        target = target[key]
    target[last] = value
    return data


DROP = object()
CIRCUITS = [
    ("[1, 2, 3]", "not a pathpatch circuit"),
    ('{"nodes": [], "edges": []}', "not a pathpatch circuit"),
    ("{not json", "is not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "nests JSON deeper"),
    (mutate("graph/model", 5), "graph 'model' is missing or not a string"),
    (mutate("graph/n_layers", "2"), "graph 'n_layers' is '2'"),
    (mutate("graph/n_layers", True), "graph 'n_layers' is True"),
    (mutate("graph/n_layers", 0), "graph 'n_layers' is 0"),
    (mutate("graph/n_heads", 10**12), "graph 'n_heads' is 1000000000000"),
    ({**permute_circuit(), "graph": {**permute_circuit()["graph"], "n_layers": 1000, "n_heads": 1000}}, "1000 layers x 1000 heads"),
    (mutate("graph/attn_only", "yes"), "graph 'attn_only' is 'yes'"),
    (mutate("graph/parallel", 1), "graph 'parallel' is 1"),
    (mutate("nodes/1/id", "L9H9.v"), "unknown node 'L9H9.v' for a 2-layer, 1-head model"),
    (mutate("nodes/1/id", 5), "string 'id'"),
    (mutate("nodes/1/id", "L0H0@3"), "unknown node 'L0H0@3'"),
    (mutate("nodes/1/id", "MLP0"), "unknown node 'MLP0'"),
    (mutate("nodes/2/stage", "abc"), "node 'L0H0' records stage 'abc'"),
    (mutate("nodes/2/pos", 5), "node 'L0H0' has pos 5"),
    (mutate("nodes/2", {"id": "L0H0.v"}), "node 'L0H0.v' is listed twice"),
    (mutate("edges/0/target", "L1H0.q"), "joins 'L1H0.q', which is not a node of the circuit"),
    (mutate("edges/0/source", 7), "string 'source' and 'target'"),
    (mutate("edges/1/source", "L1H0"), "'L1H0->L1H0.v' is not an edge of this model's graph"),
    (mutate("edges/0/kind", "magic"), "has kind 'magic'"),
    (mutate("edges/3/target", "L1H0"), "internal edge 'L0H0.v->L1H0'"),
    (mutate("edges/0/score", float("nan")), "has score nan"),
    (mutate("edges/0/score", "big"), "has score 'big'"),
    (mutate("edges/0/normalized", float("inf")), "has normalized inf"),
]


@pytest.mark.parametrize("content, named", CIRCUITS, ids=[f"circuit{i}" for i in range(len(CIRCUITS))])
def test_malformed_circuit_files_exit_2_naming_the_value(content, named, tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    assert_error(*run(["draw", str(path), "-o", str(tmp_path / "c.dot")], capsys), 2, named)
    assert not (tmp_path / "c.dot").exists()


def test_the_unmutated_test_circuit_draws(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(permute_circuit()))
    assert main(["draw", str(path), "-o", str(tmp_path / "c.dot")]) == 0
    assert "L0H0 -> \"L1H0.v\"" in (tmp_path / "c.dot").read_text()


def test_a_huge_circuit_file_is_refused_before_parsing(tmp_path, capsys):
    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:
        f.truncate(2**30)  # 1 GB, sparse
    assert_error(*run(["draw", str(huge)], capsys), 2, "limited to 50 MB")


def test_hostile_names_stay_text_in_the_diagram(tmp_path, capsys):
    data = mutate("graph/model", 'evil" ]; node [shape=skull]; <b>\\')
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    assert main(["draw", str(path), "-o", str(tmp_path / "c.dot")]) == 0
    source = (tmp_path / "c.dot").read_text()
    assert 'label="evil\\" ]; node [shape=skull]; <b>\\\\ / permute (exact-noise)"' in source
    assert "shape=skull" not in source.replace('label="evil\\" ]; node [shape=skull]', "")


def three_layer_circuit() -> dict:
    """The permute circuit, recorded as if its model had three layers."""
    data = mutate("graph/n_layers", 3)
    data["nodes"][-1].update(layer=3, stage=7)
    return data


@pytest.mark.parametrize("data, named", [
    (three_layer_circuit(), "3-layer"),
    (mutate("graph/model", "other-model"), "found on model 'other-model'"),
])
def test_check_refuses_a_circuit_of_another_model(data, named, tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps(data))
    (tmp_path / "h.toml").write_text(TOML_BASE + "[method]\nn = 8\nbootstrap = 5\n" + FAITH)
    assert_error(*run(["check", str(tmp_path / "h.toml"), "--circuit", str(tmp_path / "c.json")], capsys), 2, named)


def test_force_checks_a_circuit_of_another_name_with_a_warning(tmp_path, capsys, caplog):
    (tmp_path / "c.json").write_text(json.dumps(mutate("graph/model", "my-permute")))
    (tmp_path / "h.toml").write_text(TOML_BASE + "[method]\nn = 8\nbootstrap = 5\n" + FAITH)
    assert main(["check", str(tmp_path / "h.toml"), "--circuit", str(tmp_path / "c.json"), "--force"]) == 0
    assert "found on model 'my-permute'" in caplog.text and "PASS" in capsys.readouterr().out


# --- prompt files and model folders --------------------------------------------------------------------------------

PROMPTS = [
    ('{"clean": [1, 2, 3], "corrupt": [1, 2, 4], "answer": 1.5, "wrong_answer": 2}', "item 0 is float 1.5"),
    ('{"clean": [1, 2, true], "corrupt": [1, 2, 4], "answer": 1, "wrong_answer": 2}', "field 'clean'"),
    ('{"clean": [1, 2, 3], "corrupt": [1, 2], "answer": 1, "wrong_answer": 2}', "clean has 3 positions but corrupt has 2"),
    ('{"clean": [1, 2, 3], "corrupt": [1, 2, 4], "answer": 1, "wrong_answer": 2, "positions": ["a"]}', "field 'positions'"),
    ("[1, 2, 3]", "is not a prompt object"),
    ("not json", "invalid JSON"),
    ('{"clean": "abc", "corrupt": "abd", "answer": "x", "wrong_answer": "y"}', "no tokenizer"),
]


@pytest.mark.parametrize("line, named", PROMPTS, ids=[f"jsonl{i}" for i in range(len(PROMPTS))])
def test_malformed_prompt_files_exit_2_naming_the_field(line, named, tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text(line + "\n")
    assert_error(*run(["discover", "--model", "permute", "--task", str(path), "--out", str(tmp_path / "run")], capsys), 2, named)
    assert not (tmp_path / "run").exists()


def test_a_folder_whose_config_maps_to_its_own_python_never_runs_it(tmp_path, capsys):
    folder, marker = tmp_path / "hf", tmp_path / "RAN"
    folder.mkdir()
    (folder / "evil.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n")
    (folder / "config.json").write_text(json.dumps({"model_type": "evil", "architectures": ["EvilModel"],
                                                    "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}}))
    (folder / "model.safetensors").write_bytes(b"")  # present, so loading reaches the config
    assert_error(*run(["discover", "--model", str(folder), "--out", str(tmp_path / "run")], capsys), 2, "never runs a folder's own Python")
    assert not marker.exists()


class _Payload:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_weights_file_that_would_run_code_is_refused(tmp_path, capsys):
    from pathpatch.models import load_model

    folder, marker = tmp_path / "pk", tmp_path / "RAN"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(load_model("permute").cfg.to_dict(), default=str))
    torch.save({"w": _Payload(str(marker))}, folder / "weights.pt")
    assert_error(*run(["discover", "--model", str(folder), "--out", str(tmp_path / "run")], capsys), 2, "weights.pt")
    assert not marker.exists()


@pytest.mark.parametrize("n_layers, n_heads, attn_only, parallel", [(1, 1, True, False), (2, 2, False, False), (2, 1, False, True)])
def test_circuit_validation_accepts_exactly_the_edges_of_the_compute_graph(n_layers, n_heads, attn_only, parallel):
    """The file check (no TransformerLens import) agrees with ComputeGraph on every pair of nodes."""
    from pathpatch.circuit.circuit import shape_nodes, validate
    from pathpatch.patch.graph import ComputeGraph

    graph = ComputeGraph(n_layers, n_heads, attn_only, parallel)
    edges = {e.name for e in graph.edges}
    settings = {"model": "m", "task": "t", "method": "exact", "n_layers": n_layers, "n_heads": n_heads, "attn_only": attn_only, "parallel": parallel}
    names = list(shape_nodes(n_layers, n_heads, attn_only))
    assert set(names) == {n.name for n in (*graph.sources, *graph.dests)}
    accepted = set()
    for src in names:
        for dest in names:
            if src == dest:
                continue
            data = {"graph": settings, "nodes": [{"id": src}, {"id": dest}], "edges": [{"source": src, "target": dest, "kind": "edge", "score": 1.0}]}
            try:
                validate(data)
                accepted.add(f"{src}->{dest}")
            except ValueError:
                pass
    assert accepted == edges


@pytest.mark.parametrize("error, code, named", [
    (MemoryError(), 2, "out of memory (MemoryError)"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), 2, "out of memory (CUDA out of memory."),
    (ImportError("No module named 'graphviz'"), 2, "No module named 'graphviz'"),
    (RecursionError("maximum recursion depth exceeded"), 2, "nested too deeply"),
    (PermissionError(13, "Permission denied", "/out/run"), 2, "Permission denied: /out/run"),
    (KeyError("Unknown task 'x'"), 3, "Unknown task 'x'"),  # a bare KeyError is a bug; bad input raises InputError
    (InputError("Unknown task 'x'"), 2, "Unknown task 'x'"),
    (ValueError("expected sequence of length 3"), 3, "unexpected ValueError: expected sequence"),
    (RuntimeError("shape mismatch\nat line 3"), 3, "unexpected RuntimeError: shape mismatch; "),
    (KeyboardInterrupt(), 130, "interrupted"),
])
def test_every_exception_becomes_one_line_with_its_exit_code(error, code, named):
    from pathpatch.cli.errors import explain_error

    got_code, message = explain_error(error)
    assert got_code == code and named in message and "\n" not in message


def test_verbose_and_debug_also_follow_the_command(tmp_path, capsys):
    code, err = run(["draw", str(tmp_path / "none.json"), "--verbose"], capsys)
    assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("pathpatch draw: error: No circuit file")
    code, err = run(["draw", str(tmp_path / "none.json"), "--debug"], capsys)
    assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("pathpatch draw: error: No circuit file")
