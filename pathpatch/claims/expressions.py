"""A small, safe expression language for attention claims, evaluated per prompt on the task's tensors.

A head_role claim can say where a head attends with an expression instead of a fixed list or a named
rule: ``to = "pos == tok[dest]"`` (the position the destination's token names), ``to = "tok != tok[dest]"``
(earlier tokens unlike the destination's), ``from = "tok != corrupt_tok"`` (the changed positions),
``where = "answer > 4"`` (only prompts whose answer is above 4). Expressions are Python syntax, parsed with
``ast`` and walked node by node over a fixed set of names, operators and functions: nothing is passed to
``eval`` and no attribute of any Python object is reachable, so a hypothesis file cannot run code.

Names (each broadcast to ``[batch dest src]``):

- ``pos``: the source position (in ``from``, the destination position itself);
- ``dest``: the destination position;
- ``tok``: the clean token at ``pos``; ``tok[i]`` the token at position ``i`` (an expression: ``tok[dest]``,
  ``tok[dest - 1]``; a position outside the prompt reads as token -1, which no prompt holds);
- ``corrupt_tok``: the corrupt prompt's token at ``pos`` (and ``corrupt_tok[i]``);
- ``answer``: the prompt's answer token at its first read position; ``n``: the prompt length;
- any per-prompt feature of the task by its name (``Task.features``; also ``features.NAME``).

Operators ``+ - * // %``, comparisons (chains too), ``and or not``, unary ``-``; integer and float
literals, ``true``/``false``; functions ``abs(x)``, ``min(a, b)``, ``max(a, b)``, ``where(c, a, b)`` and
``cumsum(x)`` (the running sum of ``x`` over positions ``0..pos``, e.g. ``cumsum(where(tok == 1, 1, -1)) < 0``).
"""

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pathpatch.errors import InputError, listed
from pathpatch.task.task import Task

NAMES = {
    "pos": "the source position (in from: the destination position)",
    "dest": "the destination position",
    "tok": "the clean token at pos; tok[i] the token at position i",
    "corrupt_tok": "the corrupt prompt's token at pos; corrupt_tok[i] at position i",
    "answer": "the answer token at the prompt's first read position",
    "n": "the prompt length",
}
FUNCTIONS = {"abs": 1, "min": 2, "max": 2, "where": 3, "cumsum": 1}
MAX_LENGTH = 500  # characters: an expression is a line in a hypothesis file
_BINARY = {ast.Add: torch.add, ast.Sub: torch.sub, ast.Mult: torch.mul, ast.FloorDiv: torch.floor_divide, ast.Mod: torch.remainder}
_COMPARE = {ast.Eq: torch.eq, ast.NotEq: torch.ne, ast.Lt: torch.lt, ast.LtE: torch.le, ast.Gt: torch.gt, ast.GtE: torch.ge}
_INDEXED = ("tok", "corrupt_tok")

Node = Callable[["Scope"], Tensor]


@dataclass(frozen=True)
class Expression:
    """A parsed expression: its text, the names it reads and the function computing it on a ``Scope``."""

    text: str
    names: frozenset[str]
    compute: Node

    def mask(self, scope: "Scope") -> Tensor:
        """The expression as a boolean ``[batch dest src]``: a comparison as it is, a number as ``pos == value``."""
        value = self.compute(scope)
        if value.dtype != torch.bool:
            value = scope.pos == value
        return value.expand(scope.shape)

    def per_prompt(self, scope: "Scope") -> Tensor:
        """The expression as a boolean per prompt ``[batch]`` (a ``where`` filter reads no position)."""
        value = self.compute(scope)
        if value.dtype != torch.bool:
            raise InputError(f"where = {self.text!r} is a number; give a condition, e.g. \"answer > 4\".")
        return value.expand(scope.shape)[:, 0, 0]


def parse(text: object, key: str, features: "tuple[str, ...]" = ()) -> Expression:
    """Parse ``text`` (the value of ``key`` in a claim) into an ``Expression``.

    Raises:
        InputError: not a string, not Python expression syntax, or a name, operator or function outside
            the language (the message names it and lists what is allowed).
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{key} = {text!r:.80}; give an expression as a string, e.g. {key} = \"pos == tok[dest]\".")
    if len(text) > MAX_LENGTH:
        raise InputError(f"{key} = {text[:60]!r}...: {len(text)} characters; an expression is at most {MAX_LENGTH}.")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise InputError(f"{key} = {text!r}: not an expression ({err.msg}, column {err.offset}); "
                         "write it as in Python, e.g. \"pos == tok[dest] + 1\".") from None
    names: set[str] = set()
    compute = _compile(tree.body, text, key, names)
    return Expression(text, frozenset(names), compute)


class Scope:
    """The tensors an expression reads on one same-shape group of prompts, broadcast to ``[batch dest src]``.

    ``from_dest``: the ``from`` key's scope, where ``pos`` is the destination position itself.
    """

    def __init__(self, task: Task, dest: Tensor, from_dest: bool = False) -> None:
        clean, corrupt = task.clean.cpu(), task.corrupt.cpu()
        if clean.is_floating_point():
            raise InputError(f"Task '{task.name}' feeds vectors, not tokens; expressions over tok need token prompts.")
        self.task, self.n_pos, self.batch = task, clean.shape[1], clean.shape[0]
        self.dest = dest.to(torch.long)[None, :, None]  # [1 dest 1]
        self.pos = self.dest if from_dest else torch.arange(self.n_pos)[None, None, :]  # [1 1 src] or [1 dest 1]
        self.shape = (self.batch, len(dest), 1 if from_dest else self.n_pos)
        self.position_axis = 1 if from_dest else 2  # the axis along which ``pos`` runs (cumsum sums along it)
        self.tokens = {"tok": clean, "corrupt_tok": corrupt}  # [batch pos]

    def name(self, name: str) -> Tensor:
        """The value of a bare name."""
        if name in ("pos", "dest"):
            return getattr(self, name)
        if name in _INDEXED:
            return self.at(name, self.pos)
        if name == "answer":
            return self.task.answers.cpu().reshape(self.batch, -1)[:, 0].to(torch.long)[:, None, None]
        if name == "n":
            return torch.tensor(self.n_pos)
        features = self.task.features or {}
        if name not in features:
            raise InputError(f"Expression name {name!r}: task '{self.task.name}' has no such feature (it has "
                             f"{listed(sorted(features)) or 'none'}); the names are {', '.join(NAMES)} and the task's features.")
        return features[name].cpu()[:, None, None]

    def at(self, name: str, index: Tensor) -> Tensor:
        """``name[index]``: the token at position ``index``, broadcast; -1 (no token) outside the prompt."""
        tokens = self.tokens[name]
        index = torch.broadcast_to(index.to(torch.long), torch.broadcast_shapes(index.shape, (self.batch, 1, 1)))
        inside = (index >= 0) & (index < self.n_pos)
        rows = torch.arange(self.batch).reshape(-1, *([1] * (index.dim() - 1))).expand_as(index)
        picked = tokens[rows, index.clamp(0, self.n_pos - 1)]
        return torch.where(inside, picked, torch.full_like(picked, -1))


def _compile(node: ast.AST, text: str, key: str, names: set[str]) -> Node:
    """One AST node as a function of the scope; anything outside the language is refused, naming it."""
    sub = lambda child: _compile(child, text, key, names)  # noqa: E731
    if isinstance(node, ast.Constant) and isinstance(node.value, (bool, int, float)):
        if isinstance(node.value, float) and not math.isfinite(node.value):
            return _refuse(text, key, "a number that is not finite")
        value = torch.tensor(node.value)
        return lambda scope: value
    if isinstance(node, ast.Name):
        if node.id in ("true", "false"):
            flag = torch.tensor(node.id == "true")
            return lambda scope: flag
        names.add(node.id)
        return lambda scope, name=node.id: scope.name(name)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "features":
        names.add(node.attr)
        return lambda scope, name=node.attr: scope.name(name)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in _INDEXED:
        names.add(f"{node.value.id}[]")  # a token at a computed position: no position of its own unless the index reads one
        index = sub(node.slice)
        return lambda scope, name=node.value.id: scope.at(name, index(scope))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right, op = sub(node.left), sub(node.right), _BINARY[type(node.op)]
        return lambda scope: op(left(scope), right(scope))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        operand = sub(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda scope: ~_bool(operand(scope), text)
        return lambda scope: -operand(scope)
    if isinstance(node, ast.BoolOp):
        parts = [sub(v) for v in node.values]
        combine = torch.logical_and if isinstance(node.op, ast.And) else torch.logical_or

        def boolean(scope: Scope) -> Tensor:
            out = _bool(parts[0](scope), text)
            for part in parts[1:]:
                out = combine(out, _bool(part(scope), text))
            return out
        return boolean
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        terms = [sub(node.left), *(sub(c) for c in node.comparators)]
        ops = [_COMPARE[type(op)] for op in node.ops]

        def compare(scope: Scope) -> Tensor:
            values = [term(scope) for term in terms]
            out = ops[0](values[0], values[1])
            for i, op in enumerate(ops[1:], start=1):
                out = out & op(values[i], values[i + 1])
            return out
        return compare
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS and not node.keywords:
        name, args = node.func.id, [sub(a) for a in node.args]
        if len(args) != FUNCTIONS[name]:
            return _refuse(text, key, f"{name}() with {len(args)} arguments (it takes {FUNCTIONS[name]})")
        return _function(name, args, text)
    return _refuse(text, key, _describe(node))


def _function(name: str, args: list[Node], text: str) -> Node:
    """A call of one of ``FUNCTIONS``."""
    if name == "abs":
        return lambda scope: args[0](scope).abs()
    if name in ("min", "max"):
        op = torch.minimum if name == "min" else torch.maximum
        return lambda scope: op(*torch.broadcast_tensors(args[0](scope), args[1](scope)))
    if name == "where":
        return lambda scope: torch.where(_bool(args[0](scope), text), args[1](scope), args[2](scope))

    def cumsum(scope: Scope) -> Tensor:  # over the positions ``pos`` runs through: sources, or in ``from`` destinations
        value = torch.broadcast_to(args[0](scope), scope.shape)
        return value.to(torch.float64 if value.is_floating_point() else torch.long).cumsum(scope.position_axis)
    return cumsum


def _bool(value: Tensor, text: str) -> Tensor:
    if value.dtype != torch.bool:
        raise InputError(f"Expression {text!r}: and/or/not/where need conditions (comparisons), not numbers; "
                         "write e.g. \"tok > 3 and pos < dest\".")
    return value


def _describe(node: ast.AST) -> str:
    """What an AST node outside the language is, for the message."""
    if isinstance(node, ast.Call):
        called = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        return f"the call {called}(...)"
    if isinstance(node, ast.Attribute):
        return f"the attribute {ast.unparse(node)}"
    if isinstance(node, ast.Subscript):
        return f"the index {ast.unparse(node)} (only tok[...] and corrupt_tok[...] index)"
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        return f"the operator {type(node.op).__name__}"
    if isinstance(node, ast.Constant):
        return f"the literal {node.value!r:.40}"
    return f"{type(node).__name__} syntax ({ast.unparse(node)[:40]!r})"


def _refuse(text: str, key: str, what: str) -> Node:
    raise InputError(f"{key} = {text!r}: {what} is not part of the expression language; use the names "
                     f"{', '.join(NAMES)} or a task feature, + - * // %, comparisons, and/or/not, and "
                     f"{', '.join(f'{f}()' for f in FUNCTIONS)} (see `pathpatch check --explain head_role`).")
