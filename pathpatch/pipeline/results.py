"""What a run returns and writes: ``DiscoveryResult`` (scores, circuit, faithfulness and the report of a
``discover`` run), ``EmptyCircuitError`` (a run that kept nothing still writes its scores) and ``CheckReport``
(the claims of a ``check`` run with their verdicts). Each writes its output folder whole or not at all.
"""

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from pathpatch import __version__
from pathpatch.circuit.circuit import Circuit
from pathpatch.circuit.directions import directions_text
from pathpatch.claims.hypotheses import Hypothesis
from pathpatch.claims.verdicts import EXIT_CODES, VERDICTS, overall
from pathpatch.errors import InputError
from pathpatch.files import output_folder, write_atomic, write_text_atomic
from pathpatch.pipeline.config import DiscoverConfig, run_directions
from pathpatch.report.export import write_diagram
from pathpatch.report.reports import check_html, cross_markdown, discovery_html, normaliser_text


@dataclass(frozen=True)
class DiscoveryResult:
    """Scores, circuit and faithfulness of one run, with what it ran on.

    ``cross`` holds the circuit's faithfulness under the other corruptions (and rediscoveries with them, when the
    circuit was suspect: ``doubts.COLUMNS``); ``doubts`` the sentences saying why the circuit is suspect and what to try.
    """

    config: DiscoverConfig
    scores: pd.DataFrame
    circuit: Circuit
    faithfulness: dict[str, float]
    seconds: float
    model_name: str
    task_name: str
    n_prompts: int
    curve: pd.DataFrame | None = None
    attention_png: bytes | None = None
    cross: pd.DataFrame | None = None
    doubts: tuple[str, ...] = ()

    @property
    def directions(self) -> tuple[str, ...]:
        """The directions edges were scored in, the primary first."""
        return run_directions(self.config)

    def scored(self) -> str:
        """How many edges were scored: every edge exactly, or attributed with some re-checked exactly."""
        return scored_text(self.scores)

    def summary(self) -> str:
        """One line: edges kept, settings, faithfulness both ways, and each doubt with what to try."""
        f = self.faithfulness
        line = (
            f"{self.model_name} / {self.task_name}: {f['n_edges']} edges kept of {self.scored()} ({self.config.method}, "
            f"{'+'.join(self.directions)}, {self.config.corruption}, {self.n_prompts} prompts); faithfulness {f['faithfulness']:.3f} "
            f"(circuit alone), noise faithfulness {f['noise_faithfulness']:.3f} (circuit corrupted); clean {f['clean_metric']:.3f}, "
            f"corrupt {f['corrupt_metric']:.3f}; in {self.seconds:.1f} s"
        )
        return line + "".join(f". WARNING: {doubt}" for doubt in self.doubts)

    def report(self) -> str:
        """Return a short Markdown report: doubts, settings, directions, faithfulness, other corruptions, kept edges."""
        lines = [f"# Circuit: {self.model_name} / {self.task_name}", ""]
        if self.doubts:
            lines += ["## Doubts: this circuit is suspect", ""] + [f"- {doubt}." for doubt in self.doubts] + [""]
        lines += ["## Settings", ""]
        settings = {"model": self.model_name, "task": self.task_name, "prompts": self.n_prompts, **asdict(self.config)}
        settings["metric"] = self.circuit.info.get("metric")  # the metric used: the task's own unless overridden
        settings.pop("n")
        lines += [f"- {key}: {value}" for key, value in settings.items()] + [f"- pathpatch: {__version__}", ""]
        c = self.config
        lines += ["## Directions", "", directions_text(c.method, c.direction, self.directions, c.corruption), ""]
        lines += ["## Faithfulness", "", normaliser_text(self.faithfulness, c.corruption, self.circuit.info.get("task_corruption")), ""]
        lines += [f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in self.faithfulness.items()]
        if self.curve is not None:
            a = self.curve.attrs
            mib = f"; as MIB computes them (int sizes, signed ranking for CPR, paths only): CPR {a['mib_cpr']:.3f}, CMD {a['mib_cmd']:.3f}" if "mib_cpr" in a else ""
            lines += ["", f"Top-edge curve (edges ranked by their larger |effect| of the directions scored): CPR {a['cpr']:.3f}, "
                      f"CMD {a['cmd']:.3f}{mib}", "",
                      "| share of edges | edges | faithfulness |", "|---|---|---|"]
            lines += [f"| {r.fraction:g} | {r.n_edges} | {r.faithfulness:.3f} |" for r in self.curve.itertuples()]
        if self.cross is not None and len(self.cross):
            lines += ["", "## Under other corruptions", "", "The same circuit measured under each (each a share of its own "
                      "clean - corrupt), and, when it was suspect, the circuits rediscovered with exact scoring (rediscovered: ...):", ""]
            lines += cross_markdown(self.cross)
        lines += ["", f"Edges: {self.scored()}."]
        kept = self.scores[self.scores["edge"].isin(self.circuit.scored_edges)].sort_values("score", ascending=False)
        connectors = set(self.circuit.connectors)  # below the threshold, kept to join stronger edges to embed and logits
        nan = float("nan")
        lines += ["", "## Kept edges", "", "| edge | score | normalized | noise | denoise | kept as |", "|---|---|---|---|---|---|"]
        lines += [f"| {r.edge} | {r.score:.4g} | {getattr(r, 'normalized', nan):.3f} | {getattr(r, 'normalized_noise', nan):.3f} | "
                  f"{getattr(r, 'normalized_denoise', nan):.3f} | {'connector (joins a stronger edge)' if r.edge in connectors else 'own effect'}"
                  f"{f', kept by {r.kept_by}' if getattr(r, 'kept_by', '') else ''} |" for r in kept.itertuples()]
        return "\n".join(lines) + "\n"

    def write(self, out: Path, *, force: bool = False, command: str = "DiscoveryResult.write") -> tuple[dict[str, Path], str]:
        """Write scores.csv, circuit.json, circuit.dot/.svg and report.md as one folder ``out``.

        The files go into a hidden sibling folder that replaces ``out`` only once all are written
        (``pathpatch.files.output_folder``), so ``out`` holds this run or the earlier one, never a mix.

        Args:
            out: Output folder; an earlier pathpatch run in it is replaced whole.
            force: Write into a folder that holds files pathpatch did not write (they are kept).
            command: The command line recorded in the folder's marker file.

        Returns:
            The written paths by role, and the diagram message (which says if Graphviz is missing).

        Raises:
            ValueError: ``out`` is a file, or holds other files and ``force`` is off.
            OSError: A write failed (disk full, permissions); ``out`` is left as it was.
        """
        with output_folder(out, command, __version__, force) as tmp:
            write_atomic(tmp / "scores.csv", lambda path: self.scores.to_csv(path, index=False))
            self.circuit.to_json(tmp / "circuit.json")
            write_text_atomic(tmp / "report.md", self.report())
            write_text_atomic(tmp / "report.html", discovery_html(self))
            diagram, message = write_diagram(self.circuit, tmp / "circuit.svg")
        out = Path(out)
        paths = {"scores": out / "scores.csv", "circuit": out / "circuit.json", "report": out / "report.md", "html": out / "report.html",
                 "diagram": out / diagram.name}
        return paths, _moved(message, tmp, out)


def scored_text(scores: pd.DataFrame) -> str:
    """How many edges a score table scored: every edge exactly, or attributed with some re-checked exactly."""
    if "approx_score" not in scores:
        return f"{len(scores):,} scored exactly"
    return f"{int(scores['score'].notna().sum()):,} re-checked exactly (of {len(scores):,} attributed)"


class EmptyCircuitError(InputError):
    """No edge survived pruning. Holds the run's scores, so they can still be written (``write``)."""

    def __init__(self, message: str, scores: pd.DataFrame) -> None:
        super().__init__(message)
        self.scores = scores

    def write(self, out: Path, *, force: bool = False, command: str = "EmptyCircuitError.write") -> Path:
        """Write scores.csv and a report.md saying why the circuit is empty, as one folder ``out``."""
        with output_folder(out, command, __version__, force) as tmp:
            write_atomic(tmp / "scores.csv", lambda path: self.scores.to_csv(path, index=False))
            write_text_atomic(tmp / "report.md", f"# No circuit\n\n{self}\n\nEdges: {scored_text(self.scores)} (scores.csv).\n")
        return Path(out) / "scores.csv"


def _moved(message: str, tmp: Path, out: Path) -> str:
    """A message about files written into the temporary folder ``tmp``, naming them where they now are."""
    return message.replace(str(tmp), str(out))


@dataclass(frozen=True)
class CheckReport:
    """Verdicts on a hypothesis file's claims, with the settings they were measured under.

    ``circuit`` is None when no claim needed one (no circuit was discovered); ``complete`` is False for the
    verdicts measured before a run was interrupted, which then pass or fail nothing as a whole.
    """

    hypothesis: Hypothesis
    table: pd.DataFrame
    circuit: Circuit | None
    complete: bool = True
    notes: tuple[str, ...] = ()  # what the verdicts rest on beyond the pinned method (a given circuit's own settings)

    @property
    def outcome(self) -> str:
        """``pass``, ``fail`` (any claim fails) or ``inconclusive`` (none fails, some cannot tell); ``fail`` when incomplete."""
        return overall(list(self.table["verdict"])) if self.complete else "fail"

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    @property
    def exit_code(self) -> int:
        """0 every claim passes, 1 some claim fails, 4 none fails but some are inconclusive."""
        return EXIT_CODES[self.outcome]

    @property
    def verdict(self) -> str:
        if not self.complete:
            return f"INTERRUPTED after {len(self.table)} of {len(self.hypothesis.claims)} claims"
        counts = self.table["verdict"].value_counts()
        tally = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts)
        return f"{self.outcome.upper()} ({tally})"

    def to_dict(self) -> dict:
        """The report as strict JSON data: undefined numbers (NaN, infinities) become null."""
        h = self.hypothesis
        claims = [{k: _json_number(v) for k, v in row.items()} for row in self.table.to_dict(orient="records")]
        return {"hypothesis": h.name, "model": h.model, "task": h.task, "method": h.method, "version": __version__,
                "complete": self.complete, "verdict": self.outcome if self.complete else "interrupted", "notes": list(self.notes),
                "claims": claims}

    def write(self, out: Path, *, force: bool = False, command: str = "CheckReport.write") -> tuple[dict[str, Path], str]:
        """Write check.json, check.md, circuit.json and the diagram (failed hops highlighted) as one folder ``out``.

        Like ``DiscoveryResult.write``: the folder appears whole, replacing an earlier pathpatch run.

        Returns:
            The written paths by role, and the diagram message.

        Raises:
            ValueError: ``out`` is a file, or holds other files and ``force`` is off.
            OSError: A write failed; ``out`` is left as it was.
        """
        failed = {hop for detail in self.table.loc[self.table["verdict"] == "fail", "detail"] for hop in failed_hops(detail)}
        with output_folder(out, command, __version__, force) as tmp:
            write_text_atomic(tmp / "check.md", self.markdown())
            write_text_atomic(tmp / "report.html", check_html(self, failed))
            write_text_atomic(tmp / "check.json", json.dumps(self.to_dict(), indent=2, allow_nan=False, default=_json_number) + "\n")
            if self.circuit is not None:
                self.circuit.to_json(tmp / "circuit.json")
                diagram, message = write_diagram(self.circuit, tmp / "circuit.svg", highlight=failed)
        out = Path(out)
        paths = {"report": out / "check.json", "markdown": out / "check.md", "html": out / "report.html"}
        if self.circuit is None:
            return paths, "no circuit: no claim needed one"
        return {**paths, "circuit": out / "circuit.json", "diagram": out / diagram.name}, _moved(message, tmp, out)

    def markdown(self) -> str:
        """Return the checks as a Markdown report: verdict, methodology, one row per claim."""
        h = self.hypothesis
        lines = [f"# Checks: {h.name} ({h.model} / {h.task}): {self.verdict}", "", "## Method", ""]
        lines += [f"- {k}: {v}" for k, v in h.method.items()] + [f"- note: {note}" for note in self.notes] + ["", "## Claims", "",
                  "A claim passes when its whole 95% interval lies on the right side of its bound, fails when it lies on the "
                  "wrong side, and is inconclusive when the interval straddles the bound.", "",
                  "| claim | kind | value | 95% CI | bound | verdict |", "|---|---|---|---|---|---|"]
        for r in self.table.itertuples():
            bound = "reported only" if r.op == "report" else f"{r.op} {r.threshold:g}"
            mark = {"pass": "pass", "fail": "**FAIL**", "inconclusive": "*inconclusive*", "report": "reported"}[r.verdict]
            interval = "exact" if r.ci_low == r.ci_high == r.value else f"[{r.ci_low:.4g}, {r.ci_high:.4g}]"
            lines.append(f"| {r.name} | {r.kind} | {r.value:.4g} | {interval} | {bound} | {f'{mark} {r.detail}'.strip()} |")
        return "\n".join(lines) + "\n"

    def compare(self, baseline: Path) -> pd.DataFrame:
        """Return this run's claims beside a saved report's: previous value, change, verdict change."""
        try:
            old = pd.DataFrame(json.loads(Path(baseline).read_text())["claims"])
            if "verdict" not in old:  # reports written before verdicts had three values
                old["verdict"] = old["passed"].map({True: "pass", False: "fail"})
            old = old[["name", "value", "verdict"]]
        except (OSError, KeyError, ValueError) as err:
            raise InputError(f"Cannot read baseline {baseline} ({err}); pass a report written by `pathpatch check --out`.") from err
        merged = self.table[["name", "value", "verdict"]].merge(old, on="name", how="left", suffixes=("", "_before"))
        merged["change"] = merged["value"] - merged["value_before"]
        return merged

    def text(self) -> str:
        cols = ["name", "kind", "value", "op", "threshold", "ci_low", "ci_high", "verdict", "detail"]
        table = self.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
        notes = "".join(f"\nnote: {note}" for note in self.notes)
        return f"{self.hypothesis.name} ({self.hypothesis.model} / {self.hypothesis.task}): {self.verdict}{notes}\n{table}"


def _json_number(value: object) -> object:
    """A value as strict JSON allows it: NaN and infinities become None (null); numpy scalars plain numbers."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def failed_hops(detail: str) -> list[str]:
    """Return the edges a failed path claim names as missing from the circuit."""
    prefix = "not in circuit: "
    return detail[len(prefix):].split(";")[0].split(", ") if detail.startswith(prefix) else []
