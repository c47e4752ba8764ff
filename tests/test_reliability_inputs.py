"""Hostile files on the command line: other tools' circuit files, checkpoint configs and prompt files.

Each case runs ``pathpatch.cli.main`` in-process and checks the exit code (2: bad input), that stderr's one
error line names the offending value, and that no traceback is printed; the files that are valid but
unusual (a UTF-8 byte-order mark, a float16 checkpoint) must be read as their plain forms are.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from pathpatch.cli import main
from tests.test_fuzz import assert_error, run

FIXTURES = Path(__file__).parent / "report" / "fixtures"
BOM = b"\xef\xbb\xbf"
PAIR = {"clean": [1, 2, 3], "corrupt": [1, 2, 4], "answer": 1, "wrong_answer": 2}
FAST = ["--method", "eap", "--no-cross-check"]


# --- convert: EAP-IG files ----------------------------------------------------------------------------------------

def eap_json(**edits) -> dict:
    """The 2-layer, 2-head EAP-IG fixture with top-level keys replaced and ``edge0``/``cfg_*`` edits applied."""
    data = json.loads((FIXTURES / "eap_2l2h.json").read_text())
    first = next(iter(data["edges"]))
    for key, value in edits.items():
        if key.startswith("edge0_"):
            data["edges"][first][key.removeprefix("edge0_")] = value
        elif key.startswith("cfg_"):
            data["cfg"][key.removeprefix("cfg_")] = value
        else:
            data[key] = value
    return data


EAP_JSON = [
    (eap_json(nodes=["input", "logits"]), "'nodes' is a list"),
    (eap_json(edges=[["input", "a0.h0<q>"], [1]]), "'edges' is a list"),
    (eap_json(edges={"input->logits": [1.0, True]}), "'edges' is an object holding a list"),
    (eap_json(edge0_in_graph="false"), 'in_graph "false"; it must be a JSON boolean'),
    (eap_json(edge0_in_graph=1), "in_graph 1; it must be a JSON boolean"),
    (eap_json(edge0_score=float("nan")), "has score NaN"),
    (eap_json(edge0_score=float("-inf")), "has score -Infinity"),
    (eap_json(edge0_score="0.5"), 'has score "0.5"'),
    (eap_json(cfg_n_heads=2.7), "cfg 'n_heads' is 2.7"),
    (eap_json(cfg_n_heads="2"), "cfg 'n_heads' is \"2\""),
    (eap_json(cfg_n_layers=2.0), "cfg 'n_layers' is 2.0"),
    (eap_json(cfg_n_layers=True), "cfg 'n_layers' is true"),
    (eap_json(cfg_d_model=8.5), "cfg 'd_model' is 8.5"),
    (eap_json(cfg_n_layers=10**6), "cfg 'n_layers' is 1000000"),
    (eap_json(cfg_parallel_attn_mlp="no"), "cfg 'parallel_attn_mlp' is \"no\""),
    (eap_json(cfg=[2, 2]), "'cfg' is [2, 2]"),
]


@pytest.mark.parametrize("data, named", EAP_JSON, ids=[f"eap_json{i}" for i in range(len(EAP_JSON))])
def test_malformed_eap_json_exits_2_naming_the_value(data, named, tmp_path, capsys):
    (tmp_path / "bad.json").write_text(json.dumps(data))
    line = assert_error(*run(["convert", str(tmp_path / "bad.json"), str(tmp_path / "c.json"), "--from", "eap-json"], capsys), 2, named)
    assert "bad.json" in line
    assert not (tmp_path / "c.json").exists()


def test_an_in_graph_string_is_not_read_as_true(tmp_path, capsys):
    """``"false"`` is truthy in Python; read as ``bool`` it would put the edge into the circuit."""
    data = eap_json(edge0_in_graph="false")
    (tmp_path / "bad.json").write_text(json.dumps(data))
    code, _ = run(["convert", str(tmp_path / "bad.json"), str(tmp_path / "c.json")], capsys)
    assert code == 2 and not (tmp_path / "c.json").exists()


class _RunsCode:
    """A pickle that would create ``marker`` when unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def eap_pt(tmp_path: Path, **edits) -> Path:
    """The EAP-IG ``.pt`` fixture with entries replaced, written to ``tmp_path / 'bad.pt'``."""
    data = torch.load(FIXTURES / "eap_2l2h.pt", weights_only=True)
    data.update(edits)
    torch.save(data, tmp_path / "bad.pt")
    return tmp_path / "bad.pt"


def nan_scores() -> torch.Tensor:
    scores = torch.load(FIXTURES / "eap_2l2h.pt", weights_only=True)["edges_scores"].clone()
    scores[0, 0] = float("nan")
    return scores


EAP_PT = [
    (lambda p: eap_pt(p, edges_scores=[[1.0, 2.0], [3.0]]), "edges_scores is a list"),
    (lambda p: eap_pt(p, edges_scores=torch.zeros(2, 2)), "edges_scores is a torch.float32 tensor of shape (2, 2)"),
    (lambda p: eap_pt(p, edges_in_graph=torch.zeros(7, 15)), "edges_in_graph is a torch.float32 tensor"),
    (lambda p: eap_pt(p, src_nodes="input"), "src_nodes is a string"),
    (lambda p: eap_pt(p, edges_scores=nan_scores()), "has score nan"),
    (lambda p: eap_pt(p, cfg={"n_layers": 2, "n_heads": 2.7, "d_model": 8}), "cfg 'n_heads' is 2.7"),
    (lambda p: eap_pt(p, cfg=None), "'cfg' is null"),
]


@pytest.mark.parametrize("write, named", EAP_PT, ids=[f"eap_pt{i}" for i in range(len(EAP_PT))])
def test_malformed_eap_pt_exits_2_naming_the_value(write, named, tmp_path, capsys):
    path = write(tmp_path)
    line = assert_error(*run(["convert", str(path), str(tmp_path / "c.json")], capsys), 2, named)
    assert "bad.pt" in line


@pytest.mark.parametrize("content, named", [
    (lambda good: good[: len(good) // 2], "is not a readable torch file (PytorchStreamReader failed reading zip archive"),
    (lambda good: b"", "is not a readable torch file"),
    (lambda good: b"hello, world", "is not a readable torch file"),
    (lambda good: b"\x80\x04\x95" + bytes(range(40)), "is not a torch file"),
], ids=["truncated", "empty", "text", "garbage-pickle"])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_damaged_pt_file_exits_2(content, named, tmp_path, capsys):
    (tmp_path / "bad.pt").write_bytes(content((FIXTURES / "eap_2l2h.pt").read_bytes()))
    line = assert_error(*run(["convert", str(tmp_path / "bad.pt"), str(tmp_path / "c.json")], capsys), 2, named)
    assert "bad.pt" in line and "Graph.to_pt" in line


def test_a_pt_file_that_would_run_code_is_refused_and_never_runs_it(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    data = torch.load(FIXTURES / "eap_2l2h.pt", weights_only=True)
    torch.save({**data, "cfg": _RunsCode(marker)}, tmp_path / "evil.pt")
    line = assert_error(*run(["convert", str(tmp_path / "evil.pt"), str(tmp_path / "c.json")], capsys), 2,
                        "refused: the file would run code when loaded (pickle")
    assert "evil.pt" in line and "save plain tensors/safetensors" in line
    assert not marker.exists()


# --- convert: score tables, shapes and strict JSON output -----------------------------------------------------------

def scores_csv(tmp_path: Path, row0: dict | None = None) -> Path:
    """The fixture's full score table as scores.csv, its first row edited."""
    from pathpatch.report.interop import from_eap_json

    table = from_eap_json(FIXTURES / "eap_2l2h.json").scores.astype({"edge": object, "score": object})
    for key, value in (row0 or {}).items():
        table.loc[0, key] = value
    table.to_csv(tmp_path / "scores.csv", index=False)
    return tmp_path / "scores.csv"


SHAPE = ["--n-layers", "2", "--n-heads", "2", "--d-model", "8"]


@pytest.mark.parametrize("row0, named", [
    ({"score": float("nan")}, "scores.csv:2: score ''"),
    ({"score": "nan"}, "scores.csv:2: score 'nan'"),
    ({"score": "inf"}, "scores.csv:2: score 'inf'"),
    ({"score": "big"}, "scores.csv:2: score 'big'"),
    ({"edge": "L9H9->logits"}, "scores.csv:2: Unknown node 'L9H9'"),
    ({"edge": "L1H1->logits"}, "is scored again (first on line"),
])
def test_a_score_table_with_a_bad_row_exits_2_naming_file_and_line(row0, named, tmp_path, capsys):
    path = scores_csv(tmp_path, row0)
    assert_error(*run(["convert", str(path), str(tmp_path / "out.json"), "--to", "eap-json", *SHAPE], capsys), 2, named)
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("flags, named", [
    (["--n-layers", "-2", "--n-heads", "2"], "n_layers=-2 (--n-layers)"),
    (["--n-layers", "2", "--n-heads", "0"], "n_heads=0 (--n-heads)"),
    (["--n-layers", "1000", "--n-heads", "1000"], "n_layers=1000 x n_heads=1000"),
    (["--n-layers", "2", "--n-heads", "2", "--d-model", "-8"], "d_model=-8"),
])
def test_convert_shape_flags_must_be_positive(flags, named, tmp_path, capsys):
    path = scores_csv(tmp_path)
    assert_error(*run(["convert", str(path), str(tmp_path / "out.json"), "--to", "eap-json", *flags], capsys), 2, named)


def test_an_empty_score_table_exits_2(tmp_path, capsys):
    (tmp_path / "scores.csv").write_text("")
    assert_error(*run(["convert", str(tmp_path / "scores.csv"), str(tmp_path / "out.json"), "--to", "eap-json", *SHAPE], capsys),
                 2, "is not a readable CSV score table")


def test_eap_json_is_written_as_strict_json(tmp_path):
    """A non-finite score is refused before writing, so the file never holds ``NaN``, which strict JSON readers reject."""
    from pathpatch.errors import InputError
    from pathpatch.patch.graph import ComputeGraph
    from pathpatch.report.interop import from_eap_json, to_eap_json

    table = from_eap_json(FIXTURES / "eap_2l2h.json").scores
    with pytest.raises(InputError, match=r"Edge 'embed->L0H0.q' has score NaN"):
        to_eap_json(table.assign(score=[float("nan")] + list(table["score"][1:])), tmp_path / "s.json",
                    compute_graph=ComputeGraph(2, 2, False), d_model=8)
    assert not (tmp_path / "s.json").exists()
    written = to_eap_json(table, tmp_path / "s.json", compute_graph=ComputeGraph(2, 2, False), d_model=8).read_text()
    json.loads(written, parse_constant=lambda name: pytest.fail(f"{name} in the output"))


def test_a_bom_before_eap_json_is_read(tmp_path, capsys):
    (tmp_path / "bom.json").write_bytes(BOM + (FIXTURES / "eap_2l2h.json").read_bytes())
    assert main(["convert", str(tmp_path / "bom.json"), str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["graph"]["n_layers"] == 2


# --- checkpoint folders: config.json ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The permute model saved as a checkpoint folder (config.json + model.safetensors)."""
    from pathpatch.models import load_model, save_model

    return save_model(load_model("permute"), tmp_path_factory.mktemp("permute") / "ckpt")


def with_config(checkpoint: Path, folder: Path, **fields) -> Path:
    """A copy of ``checkpoint`` whose config.json has ``fields`` set."""
    shutil.copytree(checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **fields}))
    return folder


CONFIGS = [
    ({"n_layers": "2"}, '"n_layers": "2" is not a positive integer'),
    ({"d_vocab": 53.0}, '"d_vocab": 53.0 is not a positive integer'),
    ({"d_vocab": 53.5}, '"d_vocab": 53.5 is not a positive integer'),
    ({"d_model": -128}, '"d_model": -128 is not a positive integer'),
    ({"n_heads": 0}, '"n_heads": 0 is not a positive integer below 2**31 or -1'),
    ({"n_ctx": 10**12}, '"n_ctx": 1000000000000 is not a positive integer below 2**31'),
    ({"n_layers": True}, '"n_layers": true is not a positive integer'),
    ({"dtype": "int8"}, '"dtype": "int8" is not a dtype TransformerLens models run in; use one of float32, float16, bfloat16, float64'),
    ({"dtype": 5}, '"dtype": 5 is not a dtype'),
    ({"act_fn": "tanh"}, '"act_fn": "tanh" is not one of null, "solu"'),
    ({"normalization_type": "BN"}, '"normalization_type": "BN" is not one of null, "LN", "LNPre", "RMS", "RMSPre"'),
    ({"positional_embedding_type": "fancy"}, '"positional_embedding_type": "fancy" is not one of "standard"'),
    ({"attention_dir": "up"}, '"attention_dir": "up" is not one of "causal", "bidirectional"'),
    ({"init_mode": "zeros"}, '"init_mode": "zeros" is not one of "gpt2"'),
    ({"use_attn_result": "false"}, '"use_attn_result": "false" is not true or false'),
    ({"attn_only": 1}, '"attn_only": 1 is not true or false'),
    ({"eps": -1}, '"eps": -1 is not a positive number'),
    ({"attn_scale": float("nan")}, '"attn_scale": NaN is not a finite number'),
    ({"seed": "x"}, '"seed": "x" is not a non-negative integer or null'),
    ({"attn_types": ["everywhere"]}, '"attn_types": ["everywhere"] is not a list of "global"/"local" or null'),
    ({"tokenizer_name": 7}, '"tokenizer_name": 7 is not a string or null'),
    ({"d_model": 1280000, "d_head": 1280000}, "The config describes a model of at least"),
]


@pytest.mark.parametrize("fields, named", CONFIGS, ids=[",".join(f) for f, _ in CONFIGS])
def test_a_bad_config_json_field_exits_2_naming_key_value_and_file(fields, named, checkpoint, tmp_path, capsys):
    folder = with_config(checkpoint, tmp_path / "ckpt", **fields)
    line = assert_error(*run(["discover", "--model", str(folder), "--out", str(tmp_path / "run")], capsys), 2, named)
    assert str(folder / ("model.safetensors" if named.startswith("The config") else "config.json")) in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "torch.float64"])
def test_the_float_dtypes_transformer_lens_runs_in_load(dtype, checkpoint, tmp_path):
    from pathpatch.models import load_model

    model = load_model(with_config(checkpoint, tmp_path / "ckpt", dtype=dtype))
    assert model.cfg.dtype == getattr(torch, dtype.removeprefix("torch."))


def test_a_config_json_with_a_bom_loads(checkpoint, tmp_path):
    from pathpatch.models import load_model

    folder = with_config(checkpoint, tmp_path / "ckpt")
    (folder / "config.json").write_bytes(BOM + (folder / "config.json").read_bytes())
    assert load_model(folder).cfg.n_layers == 2


# --- prompt files ---------------------------------------------------------------------------------------------------

def test_a_bom_before_a_jsonl_prompt_file_is_read(tmp_path, capsys):
    (tmp_path / "p.jsonl").write_bytes(BOM + json.dumps({"task": {"name": "bom"}}).encode() + b"\n" + json.dumps(PAIR).encode() + b"\n")
    assert main(["discover", "--model", "permute", "--task", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "run"), *FAST]) == 0
    assert json.loads((tmp_path / "run" / "circuit.json").read_text())["graph"]["task"] == "bom"


def test_a_bom_before_an_auto_circuit_prompt_file_is_read(tmp_path, capsys):
    prompts = {"prompts": [{"clean": [1, 2, 3], "corrupt": [1, 2, 4], "answers": [1], "wrong_answers": [2]}]}
    (tmp_path / "p.json").write_bytes(BOM + json.dumps(prompts).encode())
    assert main(["discover", "--model", "permute", "--task", str(tmp_path / "p.json"), "--out", str(tmp_path / "run"), *FAST]) == 0


def test_a_bom_before_an_eap_ig_csv_is_read(tiny_gpt2_dir, tmp_path, capsys):
    rows = "clean,corrupted,correct_idx,incorrect_idx\nToday it is Monday,Today it is Friday,1,2\n"
    (tmp_path / "p.csv").write_bytes(BOM + rows.encode())
    assert main(["discover", "--model", str(tiny_gpt2_dir), "--task", str(tmp_path / "p.csv"), "--out", str(tmp_path / "run"), *FAST]) == 0


def long_lines(name: str):
    """Prompt files whose bad value is huge; the error line must name its start and stay short."""
    x = "x" * 100_000
    return {
        "field.jsonl": json.dumps({**PAIR, x: 1}),
        "metric.jsonl": json.dumps({"task": {"metric": x}}) + "\n" + json.dumps(PAIR),
        "label.jsonl": json.dumps({**PAIR, "labels": {"-" * 100_000: 1}}),
        "token.jsonl": json.dumps({**PAIR, "clean": [1, 2, int("9" * 4000)]}),
        "columns.csv": ",".join(f"c{i}" for i in range(5_000)) + "\n" + ",".join("1" for _ in range(5_000)),
    }[name]


@pytest.mark.parametrize("name, named", [
    ("field.jsonl", "field 'xxxxxxxxxx"),
    ("metric.jsonl", "unknown metric 'xxxxxxxxxx"),
    ("label.jsonl", "label '----------"),
    ("token.jsonl", "token id 99999999"),
    ("columns.csv", "found 'c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8', 'c9' and 4990 more"),
])
def test_an_error_naming_a_huge_value_stays_one_short_line(name, named, tmp_path, capsys):
    (tmp_path / name).write_text(long_lines(name) + "\n")
    line = assert_error(*run(["discover", "--model", "permute", "--task", str(tmp_path / name), "--out", str(tmp_path / "run")], capsys), 2, named)
    assert len(line) < 400, len(line)


def test_a_multi_token_answer_lists_at_most_ten_of_its_tokens(tiny_gpt2_dir, tmp_path, capsys):
    answer = " Monday" * 500
    (tmp_path / "p.jsonl").write_text(json.dumps({"clean": "Today it is", "corrupt": "Today it was", "answer": answer, "wrong_answer": " so"}) + "\n")
    line = assert_error(*run(["discover", "--model", str(tiny_gpt2_dir), "--task", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "run")],
                             capsys), 2, "is 500 tokens [")
    assert " and 490 more], not one" in line and len(line) < 500, line


@pytest.mark.parametrize("content, named", [
    (b'{"clean": [1, 2, ' + b"9" * 5000 + b'], "corrupt": [1, 2, 4], "answer": 1, "wrong_answer": 2}\n', "p.jsonl:1: invalid JSON (Exceeds the limit"),
    (b'{"clean": "caf\xe9"}\n', "p.jsonl is not UTF-8 text"),
    (json.dumps({**PAIR, "clean": [1] * 13, "corrupt": [2] * 13}).encode() + b"\n",
     "p.jsonl:1: field 'clean': has 13 positions but the model reads at most n_ctx=12"),
], ids=["5000-digit-id", "latin-1", "longer-than-n_ctx"])
def test_prompt_files_that_python_cannot_read_exit_2(content, named, tmp_path, capsys):
    (tmp_path / "p.jsonl").write_bytes(content)
    assert_error(*run(["discover", "--model", "permute", "--task", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "run")], capsys), 2, named)


# --- byte-order marks, sizes and long lists everywhere a file is read ---------------------------------------------

def test_a_bom_before_circuit_json_and_hypothesis_toml_is_read(tmp_path):
    from pathpatch.circuit.circuit import from_json
    from pathpatch.claims.hypotheses import load_hypothesis

    assert main(["convert", str(FIXTURES / "eap_2l2h.json"), str(tmp_path / "c.json")]) == 0
    (tmp_path / "bom.json").write_bytes(BOM + (tmp_path / "c.json").read_bytes())
    assert from_json(tmp_path / "bom.json").scored_edges == from_json(tmp_path / "c.json").scored_edges
    toml = Path(__file__).parents[1] / "hypotheses" / "permute.toml"
    (tmp_path / "bom.toml").write_bytes(BOM + toml.read_bytes())
    assert load_hypothesis(tmp_path / "bom.toml").claims == load_hypothesis(toml).claims


def test_a_prompt_file_over_the_size_limit_is_refused_before_reading(tmp_path, capsys):
    with open(tmp_path / "p.jsonl", "wb") as handle:  # sparse: no disk is used
        handle.truncate(51 * 2**20)
    assert_error(*run(["discover", "--model", "permute", "--task", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "run")], capsys),
                 2, "prompt files are limited to 50 MB")


def test_a_claim_listing_thousands_of_positions_is_named_in_one_short_line(tmp_path, capsys):
    (tmp_path / "h.toml").write_text('model = "permute"\ntask = "permute"\n[[claim]]\nkind = "head_role"\nhead = "L0H0"\nrole = "attends_to"\n'
                                     f'to = [0]\npositions = {list(range(100, 5100))}\nmin = 0.5\n')
    line = assert_error(*run(["check", str(tmp_path / "h.toml")], capsys), 2, "positions 100, 101, 102, 103, 104 and 4995 more lie outside")
    assert len(line) < 400, line


def test_a_score_table_scoring_an_edge_twice_names_both_lines(tmp_path, capsys):
    path = scores_csv(tmp_path)
    rows = path.read_text().splitlines()
    path.write_text("\n".join([*rows, rows[3]]) + "\n")
    assert_error(*run(["convert", str(path), str(tmp_path / "out.json"), "--to", "eap-json", *SHAPE], capsys), 2,
                 f"scores.csv:{len(rows) + 1}: edge {rows[3].split(',')[0]!r} is scored again (first on line 4)")
