"""Connectors: every edge that passes pruning stays, joined to embed and logits through its widest chain."""

import logging

import numpy as np
import pandas as pd
import pytest

from pathpatch.circuit.prune import PruneConfig, on_paths, prune
from pathpatch.models.planted_chain import WEAK
from pathpatch.models.planted_zoo import PLANTED, build_planted
from pathpatch.names import edge_at
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.edges import patch_edges
from pathpatch.patch.graph import ComputeGraph
from pathpatch.task.positions import Layout

CHAIN = PLANTED["planted-chain"]


def table(scores: dict[str, float], background: float = 0.0, labels: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Every edge of a 2-layer, 2-head attention-only model (at every label, if given) with the given
    normalized scores and ``background`` for the rest."""
    rows = []
    for edge in ComputeGraph(2, 2, True).edges:
        for label in labels or (None,):
            name = edge_at(edge.name, label)
            value = scores.get(name, background)
            rows.append({"edge": name, "src": edge.src.name, "dest": edge.dest.name, "score": 10 * value, "normalized": value})
    missing = set(scores) - {row["edge"] for row in rows}
    assert not missing, missing
    return pd.DataFrame(rows)


def kept_as(kept: pd.DataFrame) -> dict[str, bool]:
    """Kept edge -> whether it is a connector."""
    return dict(zip(kept["edge"], kept["connector"].astype(bool)))


def test_a_strong_edge_is_joined_to_embed_and_logits_through_weak_links():
    scores = table({"L0H0->L1H0.v": 0.8, "embed->L0H0.v": 0.02, "L1H0->logits": 0.03,  # the only chain of L0H0->L1H0.v
                    "embed->L1H1.v": 0.5, "L1H1->logits": 0.6})  # strong and joined already
    kept = prune(scores)
    assert kept_as(kept) == {"L0H0->L1H0.v": False, "embed->L0H0.v": True, "L1H0->logits": True,
                             "embed->L1H1.v": False, "L1H1->logits": False}
    assert list(kept.index) == sorted(kept.index), "table order"


def test_position_chains_keep_queries_in_place_and_let_values_reach_later_positions():
    labels = ("A", "B", "END")
    columns = Layout(labels, ("a", "b", "end"), frozenset((a, b) for i, a in enumerate(labels) for b in labels[i:]))
    scores = table({
        "L0H0->L1H0.v@A": 0.7,     # strong: L1H0 reads at A what L0H0 wrote there
        "embed->L0H0.v@A": 0.03,   # its upstream link: L0H0 at A can only read A
        "embed->L0H0.v@END": 0.04,  # stronger, but END's value cannot reach A
        "L1H0->logits@END": 0.02,  # a value read at A reaches L1H0 at END ...
        "L1H0->logits@A": 0.01,    # ... and at A, more weakly
        "L0H1->L1H1.q@A": 0.6,     # strong: a query at A
        "embed->L0H1.v@A": 0.02,
        "L1H1->logits@A": 0.01,    # the query's head output stays at A
        "L1H1->logits@END": 0.04,  # though END is stronger
    }, labels=labels)
    assert kept_as(prune(scores, positions=columns)) == {
        "L0H0->L1H0.v@A": False, "embed->L0H0.v@A": True, "L1H0->logits@END": True,
        "L0H1->L1H1.q@A": False, "embed->L0H1.v@A": True, "L1H1->logits@A": True,
    }


def test_the_widest_chain_wins_over_a_shorter_or_a_stronger_starting_one():
    scores = table({
        "L1H0->logits": 0.9,                            # strong
        "embed->L0H0.v": 0.04, "L0H0->L1H0.v": 0.03,    # widest: weakest link 0.03
        "embed->L1H0.q": 0.02,                          # one link, but weaker
        "embed->L0H1.v": 0.01, "L0H1->L1H0.k": 0.045,   # strongest single link, weakest chain
    }, background=0.001)
    assert kept_as(prune(scores)) == {"embed->L0H0.v": True, "L0H0->L1H0.v": True, "L1H0->logits": False}


def test_top_k_edges_are_joined_the_same_way():
    scores = table({"L0H0->L1H0.v": 0.8, "embed->L1H1.v": 0.5, "embed->L0H0.v": 0.02, "L1H0->logits": 0.03}, background=0.001)
    kept = prune(scores, PruneConfig(method="top_k", top_k=1))
    assert kept_as(kept) == {"L0H0->L1H0.v": False, "embed->L0H0.v": True, "L1H0->logits": True}


def test_a_strong_edge_no_scored_chain_reaches_is_kept_and_named(caplog):
    scores = table({"L0H0->L1H0.v": 0.8, "embed->L0H0.v": 0.02})  # nothing joins L1H0 to logits
    with caplog.at_level(logging.WARNING, logger="pathpatch.progress"):
        kept = prune(scores)
    assert kept_as(kept) == {"L0H0->L1H0.v": False}
    assert kept.attrs["unlinked"] == ["L0H0->L1H0.v"]
    assert "L0H0->L1H0.v" in caplog.text and "no chain of scored edges" in caplog.text


def test_only_rows_of_the_table_with_a_score_connect():
    scores = table({"L0H0->L1H0.v": 0.8, "embed->L0H0.v": 0.02, "L1H0->logits": 0.03})
    scores.loc[scores["edge"] == "L1H0->logits", ["score", "normalized"]] = np.nan
    assert "L1H0->logits" not in set(prune(scores)["edge"])
    assert "L1H0->logits" not in set(prune(scores[scores["edge"] != "L1H0->logits"])["edge"])


@pytest.mark.parametrize("corruption", ["mean", "resample"])
def test_ablations_keep_every_edge_that_passes(random_model, random_task, corruption):
    scores = patch_edges(random_model, random_task, config=PatchConfig(corruption=corruption, direction="noise"))
    for threshold in (0.01, 0.05, 0.2):
        kept = prune(scores, PruneConfig(threshold=threshold))
        passing = set(scores.loc[scores["normalized"].abs() >= threshold, "edge"])
        assert set(kept.loc[~kept["connector"], "edge"]) == passing
        assert (kept.loc[kept["connector"], "normalized"].abs() < threshold).all()


@pytest.fixture(scope="module")
def planted_chain():
    from pathpatch.pipeline import discover

    return discover("planted-chain")


def test_planted_chain_keeps_its_strong_edges_and_joins_them_by_the_weak_link(planted_chain):
    model, task = build_planted(CHAIN.name), CHAIN.make_task(64, 0)
    scores = patch_edges(model, task)
    old = on_paths(scores[scores["normalized"].abs() >= 0.05])  # only paths through strong edges
    assert "L0H0->L1H0.v" not in set(old["edge"]), "the planted model must defeat strong-only paths"
    circuit = planted_chain.circuit
    assert set(circuit.scored_edges) == set(CHAIN.edges), "every true edge, no distractor"
    assert circuit.connectors == sorted(WEAK[CHAIN.name])
    assert planted_chain.faithfulness["faithfulness"] == pytest.approx(1.0, abs=1e-4)
    rows = {line.split(" | ")[0]: line for line in planted_chain.report().splitlines() if line.startswith("| ")}
    assert "connector" in rows["| embed->L0H0.v"] and "connector" not in rows["| L0H0->L1H0.v"]


def test_planted_chain_by_position_joins_the_same_link_at_its_position():
    from pathpatch.task.positions import layout

    task = CHAIN.make_task(16, 0)
    kept = prune(patch_edges(build_planted(CHAIN.name), task, by_pos=True), positions=layout(task))
    assert kept_as(kept) == {"embed->L0H0.v@1": True, "embed->L1H0.v@1": False, "L0H0->L1H0.v@1": False,
                             "L0H0->L1H1.v@1": False, "L1H0->logits@7": False, "L1H1->logits@7": False}
