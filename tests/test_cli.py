"""The command line: --help everywhere, the model listing, the demo, and exit codes."""

import subprocess
import sys

import pytest

from pathpatch.cli import main


@pytest.mark.parametrize("command", [[], ["models"], ["train"], ["demo"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: pathpatch" in capsys.readouterr().out


@pytest.mark.slow  # a fresh interpreter
def test_help_is_quick_because_it_does_not_import_transformer_lens():
    """Importing TransformerLens takes seconds; --help must not wait for it."""
    code = "import sys; from pathpatch.cli.parser import build_parser; build_parser(); assert 'transformer_lens' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_lists_the_seed_models_the_zoo_trains():
    from pathpatch.models.seeds import SEED_NAMES
    from pathpatch.models.zoo import SEEDS

    assert SEED_NAMES == tuple(SEEDS)


def test_models_lists_every_model_and_task_with_its_accuracy(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("permute", "sorted-list", "trigrams", "recurrence", "weekday"):
        assert name in out
    assert "accuracy 0.9" in out or "accuracy 1.000" in out


def test_demo_scores_clean_above_corrupt(capsys):
    assert main(["demo", "--model", "permute", "--n", "16"]) == 0
    out = capsys.readouterr().out
    assert "logit_diff clean" in out and "accuracy" in out


def test_unknown_model_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--model", "nope"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


@pytest.mark.slow  # a fresh interpreter
def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "pathpatch", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("pathpatch ")


@pytest.mark.parametrize("command", [["discover"], ["draw"], ["check"]])
def test_discovery_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0 and "usage: pathpatch" in capsys.readouterr().out


def test_discover_finds_the_permute_v_composition_circuit(tmp_path, capsys):
    from pathpatch.circuit.circuit import from_json

    assert main(["discover", "--model", "permute", "--n", "32", "--out", str(tmp_path)]) == 0
    circuit = from_json(tmp_path / "circuit.json")
    assert {"embed->L0H0.v", "L0H0->L1H0.v", "L1H0->logits"} <= set(circuit.scored_edges)
    assert (tmp_path / "scores.csv").exists() and (tmp_path / "report.md").exists() and (tmp_path / "circuit.dot").exists()
    assert "faithfulness 0.9" in capsys.readouterr().out
    assert main(["draw", str(tmp_path / "circuit.json"), "-o", str(tmp_path / "again.dot")]) == 0
    assert (tmp_path / "again.dot").read_text() == (tmp_path / "circuit.dot").read_text()


def test_discover_with_impossible_threshold_exits_2(tmp_path, capsys):
    assert main(["discover", "--model", "permute", "--n", "8", "--threshold", "50", "--out", str(tmp_path)]) == 2
    assert "circuit is empty; lower --threshold" in capsys.readouterr().err


def test_draw_missing_file_exits_2(tmp_path, capsys):
    assert main(["draw", str(tmp_path / "nope.json")]) == 2
    assert "No circuit file" in capsys.readouterr().err


@pytest.mark.slow  # a fresh interpreter
def test_draw_works_on_a_saved_circuit_without_importing_transformer_lens(tmp_path):
    """Drawing needs only the circuit file: it must not wait for TransformerLens' import."""
    assert main(["discover", "--model", "permute", "--n", "16", "--out", str(tmp_path)]) == 0
    circuit, out = tmp_path / "circuit.json", tmp_path / "again.dot"
    code = (f"import sys; from pathpatch.cli import main; assert main(['draw', {str(circuit)!r}, '-o', {str(out)!r}]) == 0; "
            "assert 'transformer_lens' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert "L0H0" in out.read_text()


@pytest.mark.parametrize("method", ["acdc", "eap-ig"])
def test_discover_other_methods_find_the_same_path(method, tmp_path):
    from pathpatch.circuit.circuit import from_json

    assert main(["discover", "--model", "permute", "--method", method, "--n", "16", "--no-cross-check", "--out", str(tmp_path)]) == 0
    assert {"embed->L0H0.v", "L0H0->L1H0.v", "L1H0->logits"} <= set(from_json(tmp_path / "circuit.json").scored_edges)


def test_absolute_threshold_is_in_metric_units(tmp_path):
    import pandas as pd

    from pathpatch.circuit.circuit import from_json

    assert main(["discover", "--model", "permute", "--n", "16", "--absolute", "--threshold", "1.0", "--no-cross-check", "--out", str(tmp_path)]) == 0
    scores = pd.read_csv(tmp_path / "scores.csv").set_index("edge")
    kept = from_json(tmp_path / "circuit.json").scored_edges
    assert all(abs(scores.loc[e, "score"]) >= 1.0 for e in kept)
    assert "embed->L1H0.v" in kept, "5 logits of effect passes 1.0 though its normalized share is only ~0.1"
