"""`pathpatch lens` and `dla` claims through the command line, on models whose DLA signs are known by construction."""

import json
import textwrap

import pandas as pd
import pytest
import torch

from pathpatch.cli import main

# Layer 1 head 0 of a seeded random LayerNorm model is rewired so that its output is the same vector at every position:
# W_V = 0 and b_V = c make z = c whatever it attends to, and W_O = c (x) k*g / |c|^2 makes the output k*g, where g is the
# centred logit-difference direction (the final LayerNorm's weight is 1). Its DLA is then k*|g|^2 / scale on every prompt:
# positive for k > 0, negative for k < 0, whatever the prompt.
SIGNED = textwrap.dedent('''
    import warnings

    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from pathpatch.task.task import Task

    ANSWER, WRONG = 3, 5


    def build(k):
        cfg = HookedTransformerConfig(n_layers=2, n_heads=2, d_model=8, d_head=4, d_mlp=16, n_ctx=16, d_vocab=32,
                                      act_fn="gelu", normalization_type="LN", seed=0, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            model = HookedTransformer(cfg).eval()
        attn = model.blocks[1].attn
        with torch.no_grad():
            g = model.W_U[:, ANSWER] - model.W_U[:, WRONG]
            g = g - g.mean()
            c = torch.ones(4)
            attn.W_V[0].zero_()
            attn.b_V[0].copy_(c)
            attn.W_O[0].copy_(torch.outer(c / c.dot(c), k * g))
        return model


    def positive():
        return build(3.0)


    def negative():
        return build(-3.0)


    def task(n, seed):
        g = torch.Generator().manual_seed(seed)
        clean, corrupt = (torch.randint(0, 32, (n, 6), generator=g) for _ in range(2))
        return Task("signed", clean, corrupt, torch.full((n, 1), ANSWER), torch.full((n, 1), WRONG), torch.tensor([5]))
''')


@pytest.fixture
def signed(tmp_path, monkeypatch):
    """A folder holding the signed-model factory; the working directory for the command."""
    (tmp_path / "signed.py").write_text(SIGNED)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def hypothesis(folder, claim: str, name: str = "h.toml") -> str:
    path = folder / name
    path.write_text(f'model = "signed.py:positive"\ntask = "signed.py:task"\n\n[method]\nn = 8\nbootstrap = 50\n\n[[claim]]\n{claim}\n')
    return str(path)


def expected_l1h0(folder, which: str) -> float:
    """L1H0's mean DLA by hand: k * |g|^2 / the final LayerNorm's scale at the read position, over the prompts."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("signed_by_hand", folder / "signed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model, task = getattr(module, which)(), module.task(8, 0)
    _, cache = model.run_with_cache(task.clean)
    g = model.W_U[:, module.ANSWER] - model.W_U[:, module.WRONG]
    k = 3.0 if which == "positive" else -3.0
    return float((k * (g - g.mean()).pow(2).sum() / cache["ln_final.hook_scale"][:, 5, 0]).mean().detach())


def test_lens_writes_tables_figures_and_reports_that_add_up(signed, capsys):
    assert main(["lens", "--model", "signed.py:positive", "--task", "signed.py:task", "--n", "8", "--out", "out"]) == 0, capsys.readouterr().err
    out = signed / "out"
    logit_diff, per_prompt = pd.read_csv(out / "logit_diff.csv"), pd.read_csv(out / "dla_per_prompt.csv")
    assert list(logit_diff.columns) == ["prompt", "clean", "corrupt"] and len(logit_diff) == 8
    total = per_prompt[per_prompt["kind"].isin(["embed", "attn", "mlp", "bias"])].groupby("prompt")["dla"].sum()
    assert (total - logit_diff["clean"]).abs().max() < 1e-4
    heads = pd.read_csv(out / "dla_heads.csv").set_index("component")
    assert list(heads.columns) == ["kind", "layer", "head", "mean", "std", "ci_low", "ci_high"]
    assert heads.loc["L1H0", "mean"] == pytest.approx(expected_l1h0(signed, "positive"), abs=1e-5)
    assert pd.read_csv(out / "dla.csv")["component"].tolist() == ["embed", "ATTN0", "MLP0", "ATTN1", "MLP1", "bias"]
    assert pd.read_csv(out / "logit_lens.csv")["after"].tolist() == ["embed", "ATTN0", "MLP0", "ATTN1", "MLP1"]
    for png in ("dla_heads.png", "dla.png", "logit_lens.png", "attention_positive.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert "data:image/png;base64," in html and "https://" not in html and "L1H0" in html
    assert "| L1H0 |" in md and "## Logit lens" in md


def test_lens_refuses_a_task_without_a_logit_difference(capsys, tmp_path):
    assert main(["lens", "--model", "recurrence", "--n", "4", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "pathpatch lens: error:" in err and "logit_diff" in err and not (tmp_path / "out").exists()


def test_lens_has_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["lens", "--help"])
    assert exit_info.value.code == 0 and "--top" in capsys.readouterr().out


@pytest.mark.parametrize("which, code", [("positive", 0), ("negative", 1)])
def test_dla_claim_passes_only_for_the_sign_built_in(signed, which, code, capsys):
    path = hypothesis(signed, 'name = "L1H0 pushes toward the answer"\nkind = "dla"\nnode = "L1H0"\nmin = 0')
    assert main(["check", path, "--model", f"signed.py:{which}", "--out", "c"]) == code, capsys.readouterr().err
    claim = json.loads((signed / "c" / "check.json").read_text())["claims"][0]
    assert claim["kind"] == "dla" and claim["value"] == pytest.approx(expected_l1h0(signed, which), abs=1e-5)
    assert claim["ci_low"] <= claim["value"] <= claim["ci_high"] and (claim["ci_high"] < 0) == (which == "negative")


def test_a_negative_head_claim_is_an_upper_bound(signed, capsys):
    path = hypothesis(signed, 'kind = "dla"\nnode = "L1H0"\nmax = 0')
    assert main(["check", path, "--model", "signed.py:negative"]) == 0, capsys.readouterr().err
    assert main(["check", path]) == 1


@pytest.mark.parametrize("node, message", [("L9H0", "Unknown DLA component 'L9H0'"), ("attn1", "Did you mean 'ATTN1'"),
                                           ("L1H0@END", "drop the '@...'")])
def test_bad_dla_nodes_exit_2_with_the_fix(signed, node, message, capsys):
    path = hypothesis(signed, f'kind = "dla"\nnode = "{node}"\nmin = 0')
    assert main(["check", path]) == 2
    assert message in capsys.readouterr().err
