"""The commands added for pictures, interop and scale-out, through the command line as a user runs them."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from pathpatch.cli import main


def test_patch_writes_tables_heatmaps_and_a_report(tmp_path, capsys):
    out = tmp_path / "patch"
    assert main(["patch", "--model", "permute", "--n", "8", "--what", "resid_pre,z", "--out", str(out)]) == 0, capsys.readouterr().err
    table = pd.read_csv(out / "z.csv")
    assert {"layer", "pos", "head", "normalized"} <= set(table.columns) and len(table) == 2 * 12 * 1
    assert (out / "resid_pre.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "https://" not in html


def test_patch_names_an_unknown_activation(tmp_path, capsys):
    assert main(["patch", "--model", "permute", "--what", "resid_pre,telepathy", "--out", str(tmp_path / "p")]) == 2
    assert "telepathy" in capsys.readouterr().err


def test_patch_skips_activations_an_attention_only_model_lacks_with_a_note(tmp_path, capsys):
    out = tmp_path / "patch"
    assert main(["patch", "--model", "permute", "--n", "4", "--no-positions", "--what", "resid_pre,mlp_out,resid_mid", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "pathpatch patch: note: skipping mlp_out, resid_mid: the model has no such activation" in err
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".csv", ".png")) == ["resid_pre.csv", "resid_pre.png"]
    assert "mlp_out,resid_mid" in (out / "report.html").read_text()


def test_patch_refuses_when_the_model_has_none_of_the_activations(tmp_path, capsys):
    assert main(["patch", "--model", "permute", "--what", "mlp_out", "--out", str(tmp_path / "p")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("pathpatch patch: error: --what 'mlp_out': the model has none of these activations") and "--what resid_pre" in line
    assert not (tmp_path / "p").exists()


def test_discover_and_check_write_report_html_beside_the_markdown(tmp_path):
    assert main(["discover", "--model", "permute", "--n", "8", "--out", str(tmp_path / "d")]) == 0
    assert "<svg" in (tmp_path / "d" / "report.html").read_text() or "dot is not installed" in (tmp_path / "d" / "report.html").read_text()
    assert main(["check", "hypotheses/permute.toml", "--circuit", str(tmp_path / "d" / "circuit.json"), "--out", str(tmp_path / "c")]) == 0
    assert "95% CI" in (tmp_path / "c" / "report.html").read_text()


def test_discover_by_position_keeps_position_aware_edges_drawn_by_position(tmp_path, capsys):
    """The command line as a user runs it: edges at named positions, scored, drawn on a position grid, byte-identical twice."""
    from pathpatch.models import build_task, load_model
    from pathpatch.patch.edges import patch_edges

    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        assert main(["discover", "--model", "permute", "--n", "16", "--granularity", "position", "--no-cross-check", "--out", str(out)]) == 0, capsys.readouterr().err
    circuit = json.loads((runs[0] / "circuit.json").read_text())
    assert circuit["graph"]["granularity"] == "position"
    kept = sorted(e["source"].split("@")[0] + "->" + e["target"] for e in circuit["edges"] if e["kind"] == "edge")
    scores = pd.read_csv(runs[0] / "scores.csv").set_index("edge")
    assert kept and all("@" in e for e in kept) and set(kept) <= set(scores.index)
    alone = patch_edges(load_model("permute"), build_task("permute", n=16), kept[:3]).set_index("edge")
    for edge in kept[:3]:  # each kept edge scored alone at its position gives the table's number
        assert scores.loc[edge, "score"] == pytest.approx(alone.loc[edge, "score"], abs=1e-5)
    dot = (runs[0] / "circuit.dot").read_text()
    assert "layout=neato" in dot and "column " in dot
    for name in ("circuit.json", "scores.csv", "circuit.dot"):
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name


def test_position_aware_circuits_are_refused_by_peer_formats(tmp_path, capsys):
    assert main(["discover", "--model", "permute", "--n", "8", "--granularity", "position", "--no-cross-check", "--out", str(tmp_path / "d")]) == 0
    assert main(["convert", str(tmp_path / "d" / "circuit.json"), str(tmp_path / "e.json"), "--to", "eap-json"]) == 2
    assert "position-aware" in capsys.readouterr().err


def test_acdc_by_position_is_refused_with_the_alternative(tmp_path, capsys):
    assert main(["discover", "--model", "permute", "--method", "acdc", "--granularity", "position", "--out", str(tmp_path / "d")]) == 2
    assert "--method exact" in capsys.readouterr().err


def test_check_explain_prints_every_claim_kind(capsys):
    from pathpatch.claims.claim_reference import REFERENCE

    assert main(["check", "--explain"]) == 0
    out = capsys.readouterr().out
    assert all(kind in out and example in out for kind, _, example in REFERENCE)


def test_convert_round_trips_a_circuit_through_eap_ig_json(tmp_path, capsys):
    assert main(["discover", "--model", "permute", "--n", "8", "--no-cross-check", "--out", str(tmp_path / "d")]) == 0
    ours = tmp_path / "d" / "circuit.json"
    assert main(["convert", str(ours), str(tmp_path / "eap.json"), "--to", "eap-json", "--d-model", "128"]) == 0
    eap = json.loads((tmp_path / "eap.json").read_text())
    assert {"cfg", "nodes", "edges"} <= set(eap) and any(v["in_graph"] for v in eap["edges"].values())
    assert main(["convert", str(tmp_path / "eap.json"), str(tmp_path / "back.json"), "--to", "pathpatch"]) == 0
    from pathpatch.circuit.circuit import from_json

    assert from_json(tmp_path / "back.json").scored_edges == from_json(ours).scored_edges


@pytest.mark.slow  # two process groups
def test_two_workers_give_one_process_scores_csv(tmp_path):
    """``--workers 2`` runs torchrun with two gloo processes; scores.csv must be byte-identical."""
    args = ["discover", "--model", "permute", "--n", "8", "--top-k", "4"]
    one = subprocess.run([sys.executable, "-m", "pathpatch", *args, "--out", str(tmp_path / "one")], capture_output=True, text=True)
    two = subprocess.run([sys.executable, "-m", "pathpatch", "--workers", "2", *args, "--out", str(tmp_path / "two")], capture_output=True, text=True)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    assert (tmp_path / "two" / "scores.csv").read_bytes() == (tmp_path / "one" / "scores.csv").read_bytes()
    assert two.stdout.count("edges kept") == 1  # rank 0 alone prints


@pytest.mark.parametrize("command", [["patch"], ["convert"], ["save"]])
def test_new_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
