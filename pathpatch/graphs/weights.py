"""Weight-based head scores used by hypothesis claims: copying, composition, virtual OV circuits.

- Copying score (Elhage et al., 2021; document ``004``): eigenvalues ``λ`` of a head's full OV circuit
  ``W_E W_OV W_U`` (or of ``W_OV`` in the residual basis) give ``Σλ / Σ|λ|`` (real part): near 1 for a
  head that copies its input to the output, near -1 for a negative copy head. Only the first
  ``d_vocab_out`` embedding rows are used, so the matrix is square when the input vocabulary has extra
  (special) tokens.
- Composition score: ``||W_A W_B||_F / (||W_A||_F ||W_B||_F)`` between an earlier head's OV circuit and
  a later head's Q, K or V side (TransformerLens' ``all_composition_scores``).
- Virtual OV accuracy (document ``000``): top-1 accuracy of ``W_E OV_1 OV_2 ... W_U`` on its diagonal:
  how often a token routed through the chain of heads predicts itself.
"""

import torch

from pathpatch.names import Node


def ov_circuit(model: torch.nn.Module, nodes: list[Node]) -> torch.Tensor:
    """Return ``W_E[:d_vocab_out] · OV_1 · ... · OV_n · W_U`` ``[d_vocab d_vocab]`` for a chain of heads."""
    out = model.W_E[: model.cfg.d_vocab_out]  # [d_vocab d_model]
    for node in nodes:
        out = out @ model.W_V[node.layer, node.head] @ model.W_O[node.layer, node.head]
    return out @ model.W_U


def copying_score(model: torch.nn.Module, node: Node, space: str = "vocab") -> float:
    """Return ``Σλ / Σ|λ|`` of the head's OV circuit (1: copies, -1: negative copy).

    ``space="vocab"`` scores the full circuit ``W_E W_OV W_U``; ``space="residual"`` scores ``W_OV`` itself
    ``[d_model d_model]``, as document ``004`` reads its layer-2 heads (OV close to -I).
    """
    if space not in ("vocab", "residual"):
        raise ValueError(f"Unknown space {space!r} for a copying score; choose 'vocab' or 'residual'.")
    with torch.no_grad():
        matrix = ov_circuit(model, [node]) if space == "vocab" else model.W_V[node.layer, node.head] @ model.W_O[node.layer, node.head]
        eig = torch.linalg.eigvals(matrix.double())
    return float(eig.real.sum() / eig.abs().sum())


def composition_score(model: torch.nn.Module, src: Node, dest: Node, kind: str) -> float:
    """Return the Q/K/V composition score of ``src``'s OV circuit into ``dest``."""
    if src.layer >= dest.layer:
        raise ValueError(f"{src.name} -> {dest.name}: composition needs the first head in an earlier layer.")
    with torch.no_grad():
        scores = model.all_composition_scores(kind.upper())  # [layer head layer head]
    return float(scores[src.layer, src.head, dest.layer, dest.head])


def virtual_ov_accuracy(model: torch.nn.Module, nodes: list[Node]) -> float:
    """Return the share of tokens whose virtual OV circuit row peaks on the token itself."""
    with torch.no_grad():
        circuit = ov_circuit(model, nodes)  # [d_vocab d_vocab]
    diagonal = torch.arange(circuit.shape[0], device=circuit.device)
    return float((circuit.argmax(-1) == diagonal).float().mean())
