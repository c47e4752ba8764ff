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

Scores are read off the weights the model applies, not the raw parameters: ``canonical`` folds each
norm's scale into the weights that read it, centres reading and writing weights where LayerNorm
centres its input, and centres the unembedding (logits shifted by a constant per position give the
same softmax). Equivalent models, such as a model and its ``fold_ln`` copy, then give the same score.
One approximation remains, as in every weight-based score: the per-token ``1 / norm`` factor of each
LayerNorm or RMSNorm is dropped (it scales a token's whole input, not its direction).
"""

import copy
import logging
import warnings

import torch

from pathpatch.errors import InputError, listed
from pathpatch.names import Node

log = logging.getLogger(__name__)


def canonical(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` with norms folded and weights centred as the model applies them (see module docstring).

    Models without TransformerLens' ``process_weights_`` (TransformerBridge) are returned as they are.
    """
    if not hasattr(model, "process_weights_"):
        log.warning("%s cannot fold its norms; weight scores read its raw weights.", type(model).__name__)
        return model
    norm = model.cfg.normalization_type
    folded = copy.deepcopy(model)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        folded.process_weights_(fold_ln=norm in ("LN", "RMS"), center_writing_weights=norm in ("LN", "LNPre"), center_unembed=True)
    return folded


def ov_circuit(model: torch.nn.Module, nodes: list[Node]) -> torch.Tensor:
    """Return ``W_E[:d_vocab_out] · OV_1 · ... · OV_n · W_U`` ``[d_vocab d_vocab]`` for a chain of heads."""
    out = model.W_E[: model.cfg.d_vocab_out]  # [d_vocab d_model]
    for node in nodes:
        out = out @ model.W_V[node.layer, node.head] @ model.W_O[node.layer, node.head]
    return out @ model.W_U


def copying_score(model: torch.nn.Module, node: Node, space: str = "vocab", tokens: "list[int] | None" = None) -> float:
    """Return ``Σλ / Σ|λ|`` of the head's OV circuit (1: copies, -1: negative copy).

    ``space="vocab"`` scores the full circuit ``W_E W_OV W_U``; ``space="residual"`` scores ``W_OV`` itself
    ``[d_model d_model]``, as document ``004`` reads its layer-2 heads (OV close to -I). ``tokens`` limits a
    vocabulary score to the circuit among those tokens (rows and columns), for a head that copies part
    of the vocabulary.

    Raises:
        ValueError: Unknown space, tokens with the residual space, or tokens outside the vocabulary.
    """
    if space not in ("vocab", "residual"):
        raise InputError(f"Unknown space {space!r} for a copying score; choose 'vocab' or 'residual'.")
    with torch.no_grad():
        if space == "residual":
            if tokens is not None:
                raise InputError("tokens = [...] selects vocabulary rows; use it with space = 'vocab'.")
            matrix = model.W_V[node.layer, node.head] @ model.W_O[node.layer, node.head]
        else:
            matrix = ov_circuit(model, [node])
            if tokens is not None:
                bad = [t for t in tokens if not 0 <= t < matrix.shape[0]]
                if bad or not tokens:
                    raise InputError(f"Copying claim on {node.name}: tokens {listed(bad or tokens)} lie outside the vocabulary 0..{matrix.shape[0] - 1}; "
                                     "list token ids the model reads and writes.")
                index = torch.tensor(tokens, device=matrix.device)
                matrix = matrix[index][:, index]  # [token token]
        eig = torch.linalg.eigvals(matrix.double())
    return float(eig.real.sum() / eig.abs().sum())


def composition_score(model: torch.nn.Module, src: Node, dest: Node, kind: str) -> float:
    """Return the Q/K/V composition score of ``src``'s OV circuit into ``dest``."""
    if src.layer >= dest.layer:
        raise InputError(f"{src.name} -> {dest.name}: composition needs the first head in an earlier layer.")
    with torch.no_grad():
        scores = model.all_composition_scores(kind.upper())  # [layer head layer head]
    return float(scores[src.layer, src.head, dest.layer, dest.head])


def virtual_ov_accuracy(model: torch.nn.Module, nodes: list[Node]) -> float:
    """Return the share of tokens whose virtual OV circuit row peaks on the token itself."""
    with torch.no_grad():
        circuit = ov_circuit(model, nodes)  # [d_vocab d_vocab]
    diagonal = torch.arange(circuit.shape[0], device=circuit.device)
    return float((circuit.argmax(-1) == diagonal).float().mean())
