"""Regenerate the README's pictures of every bundled seed model: `make pictures`.

For each seed model: the circuit its hypothesis file checks (docs/diagrams/NAME.png), its position-aware
circuit drawn by position (NAME-positions.png), and document 001-style activation-patching heatmaps of
the residual stream and the head outputs (NAME-resid_pre.png, NAME-z.png). Every picture comes from the
command line a user would type; the run folders stay in out/pictures/.
"""

import shutil
import sys
import time
from pathlib import Path

from pathpatch.cli import main

ROOT = Path(__file__).resolve().parents[1]
DIAGRAMS = ROOT / "docs" / "diagrams"
RUNS = ROOT / "out" / "pictures"
# By position an edge's effect is split over the positions that carry it, so sorted-list (ten answers,
# each read at its own position) and recurrence keep edges at a lower share of clean - corrupt.
# Recurrence has 24 heads and 14 positions (~15,000 edge variants), so EAP-IG ranks them by position
# and exact patching confirms the strongest 120, of which the 40 strongest on paths are kept.
POSITION_SETTINGS = {
    "permute": ["--threshold", "0.05"],
    "sorted-list": ["--threshold", "0.01"],
    "trigrams": ["--threshold", "0.05"],
    "recurrence": ["--top-k", "40", "--method", "eap-ig"],
}


def run(*argv: str) -> None:
    """Run one pathpatch command; stop on failure."""
    started = time.perf_counter()
    code = main(list(argv))
    print(f"[{time.perf_counter() - started:5.1f} s] pathpatch {' '.join(argv)}", file=sys.stderr)
    if code != 0:
        raise SystemExit(f"pathpatch {' '.join(argv)} exited with {code}")


def pictures(name: str) -> None:
    """Draw one seed model's pictures into docs/diagrams."""
    check, positions, patch = RUNS / name, RUNS / f"{name}-positions", RUNS / f"{name}-patch"
    run("check", str(ROOT / "hypotheses" / f"{name}.toml"), "--out", str(check))
    run("draw", str(check / "circuit.json"), "-o", str(DIAGRAMS / f"{name}.png"))
    run("discover", "--model", name, "--granularity", "position", *POSITION_SETTINGS[name], "--out", str(positions))
    run("draw", str(positions / "circuit.json"), "-o", str(DIAGRAMS / f"{name}-positions.png"))
    run("patch", "--model", name, "--what", "resid_pre,z", "--out", str(patch))
    for act in ("resid_pre", "z"):
        shutil.copyfile(patch / f"{act}.png", DIAGRAMS / f"{name}-{act}.png")
    for dot in DIAGRAMS.glob("*.dot"):
        dot.unlink()


if __name__ == "__main__":
    DIAGRAMS.mkdir(parents=True, exist_ok=True)
    for seed in sys.argv[1:] or list(POSITION_SETTINGS):
        pictures(seed)
