"""The self-contained HTML report (pathpatch/report/html.py), checked as text and in a real headless Chromium."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pathpatch.circuit.circuit import Circuit
from pathpatch.models import build_task, load_model
from pathpatch.patch.activation import activation_patch
from pathpatch.patch.config import PatchConfig
from pathpatch.patch.graph import ComputeGraph
from pathpatch.report import html, plots
from pathpatch.report.export import to_dot

DENOISE = PatchConfig(direction="denoise")  # TransformerLens' patching convention: clean activations into the corrupt run

PASS_ROW, FAIL_ROW = (0xE6, 0xF4, 0xEA), (0xFD, 0xE7, 0xE7)  # html.STYLE's tr.pass / tr.fail backgrounds
EDGE_BLUE = (0x21, 0x66, 0xAC)  # export.to_dot's colour of positive edges
CHECKS = pd.DataFrame({
    "name": ["v_composition", "faithful <enough>"], "kind": ["path", "faithfulness"], "value": [0.93, 0.41],
    "op": [">=", ">="], "threshold": [0.5, 0.8], "ci_low": [0.88, 0.30], "ci_high": [0.97, 0.52],
    "passed": [True, False], "detail": ["", "below 0.8"],
})


def chromium() -> str | None:
    return shutil.which("chromium") or (str(Path("/usr/bin/chromium")) if Path("/usr/bin/chromium").exists() else None)


def browser(args: list[str], page: Path, profile: Path) -> subprocess.CompletedProcess:
    """Run headless Chromium on ``page`` with no network-facing features."""
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               "--force-device-scale-factor=1", f"--user-data-dir={profile}", "--window-size=1200,1600", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report with a real heatmap, a check table, settings, and (when ``dot`` exists) a real circuit diagram."""
    model, task = load_model("permute"), build_task("permute", n=4)
    png = plots.figure_png(plots.patching_heatmap(activation_patch(model, task, "resid_pre", config=DENOISE), "resid_pre"))
    sections = [
        html.png_section("Activation patching: resid_pre", png, "layer x position heatmap"),
        html.table_section("Hypothesis checks", CHECKS, highlight_column="passed", caption="95% bootstrap intervals"),
        html.settings_section("Settings", {"model": "permute", "prune": {"k": 3}, "seed": 0}),
    ]
    if shutil.which("dot"):
        rows = pd.DataFrame({"edge": ["embed->L0H0.v", "L0H0->L1H0.v", "L1H0->logits"], "src": ["embed", "L0H0", "L1H0"],
                             "dest": ["L0H0.v", "L1H0.v", "logits"], "score": [2.0, 1.5, 3.0], "method": "exact-noise"})
        circuit = Circuit.from_edges(rows, ComputeGraph(2, 1, True), "permute <model>", "permute")
        sections.append(html.svg_section("Circuit", to_dot(circuit).pipe(format="svg")))
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(html.report_html("permute & <friends>", sections), encoding="utf-8")
    return path, png


def test_report_names_no_external_resource(report):
    text = report[0].read_text(encoding="utf-8")
    outside_namespaces = re.sub(r'xmlns(?::\w+)?="http://www\.w3\.org/[\w/]+"', "", text)
    for banned in ("http://", "https://", 'src="//', "<script", "<link", "url(", "@import", "<iframe"):
        assert banned not in outside_namespaces.lower(), banned
    assert re.findall(r'src="([^"]{0,22})', text) == ["data:image/png;base64,"]
    assert "<!DOCTYPE svg" not in text and "<?xml" not in text


def test_report_escapes_names_and_spells_out_verdicts(report):
    text = report[0].read_text(encoding="utf-8")
    assert "<h1>permute &amp; &lt;friends&gt;</h1>" in text and "faithful &lt;enough&gt;" in text
    assert '<p class="summary">1 of 2 pass, 1 fail</p>' in text
    assert '<th>95% CI</th>' in text and "[0.88, 0.97]" in text and "[0.3, 0.52]" in text
    assert '<td class="verdict-pass">✓ pass</td>' in text and '<td class="verdict-fail">✗ fail</td>' in text
    if shutil.which("dot"):
        assert "permute &lt;model&gt;" in text or "permute &#60;model&#62;" in text


def test_sections_refuse_unsafe_or_wrong_content():
    with pytest.raises(ValueError, match="script"):
        html.svg_section("d", '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    with pytest.raises(ValueError, match="external reference"):
        html.svg_section("d", '<svg xmlns="http://www.w3.org/2000/svg"><image href="https://x.org/a.png"/></svg>')
    with pytest.raises(ValueError, match="not a PNG"):
        html.png_section("p", b"GIF89a", "alt")
    with pytest.raises(ValueError, match="highlight column 'ok'"):
        html.table_section("t", CHECKS, highlight_column="ok")
    with pytest.raises(TypeError, match="needs a DataFrame"):
        html.Section("t", "table", "not a table")


def test_weight_claims_show_exact_and_report_rows_stay_neutral():
    table = pd.DataFrame({"name": ["ov"], "op": ["report"], "ci_low": [1.0], "ci_high": [1.0], "passed": [True]})
    text = html.report_html("r", [html.table_section("t", table, "passed")])
    assert "exact (no interval)" in text and '<tr class="report">' in text and "0 of 0 pass, 0 fail, 1 reported only" in text


def distinct_colours(shot: np.ndarray) -> int:
    packed = shot[..., 0].astype(np.uint32) << 16 | shot[..., 1].astype(np.uint32) << 8 | shot[..., 2]  # [row col]
    return len(np.unique(packed))


def rows_with(shot: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Indices of screenshot rows holding at least 50 pixels of exactly ``colour``."""
    return np.flatnonzero((shot == np.array(colour, dtype=np.uint8)).all(-1).sum(1) >= 50)


def find_image(shot: np.ndarray, picture: np.ndarray) -> tuple[int, int] | None:
    """Top-left corner where ``picture`` appears pixel for pixel in ``shot`` (rows matched as bytes), or None."""
    middle = picture.shape[0] // 2
    needle = picture[middle].tobytes()
    for y in range(middle, shot.shape[0] - picture.shape[0] + middle + 1):
        at = shot[y].tobytes().find(needle)
        while at >= 0 and at % 3:
            at = shot[y].tobytes().find(needle, at + 1)
        if at >= 0:
            top, left = y - middle, at // 3
            if np.array_equal(shot[top:top + picture.shape[0], left:left + picture.shape[1]], picture):
                return top, left
    return None


def as_rgb(path: Path) -> np.ndarray:
    import matplotlib.image

    return (matplotlib.image.imread(path)[..., :3] * 255).round().astype(np.uint8)  # [row col 3]


@pytest.mark.slow  # headless Chromium
@pytest.mark.skipif(chromium() is None, reason="no chromium on PATH or at /usr/bin/chromium (tools/setup.sh installs Debian's)")
def test_chromium_renders_heatmap_table_and_diagram(report, tmp_path):
    page, png = report
    out = tmp_path / "shot.png"
    run = browser([f"--screenshot={out}"], page, tmp_path / "profile")
    assert out.is_file(), f"chromium wrote no screenshot (rc {run.returncode}): {run.stderr[-2000:]}"
    shot = as_rgb(out)  # [row col 3]
    assert shot.shape == (1600, 1200, 3)
    assert (shot.min(-1) < 250).mean() > 0.05 and distinct_colours(shot) > 200, "the page looks blank"
    (tmp_path / "heat.png").write_bytes(png)
    picture = as_rgb(tmp_path / "heat.png")
    corner = find_image(shot, picture)
    assert corner is not None, "the heatmap PNG does not appear, pixel for pixel, in the screenshot"
    region = shot[corner[0]:corner[0] + picture.shape[0], corner[1]:corner[1] + picture.shape[1]].astype(int)
    red, green, blue = region[..., 0], region[..., 1], region[..., 2]
    assert ((blue - red > 60) & (blue - green > 20)).sum() > 500 and ((red - blue > 60) & (red - green > 40)).sum() > 100
    pass_rows, fail_rows = rows_with(shot, PASS_ROW), rows_with(shot, FAIL_ROW)
    assert len(pass_rows) and len(fail_rows), "the check table's pass/fail rows are not coloured"
    below = corner[0] + picture.shape[0]
    assert below < pass_rows.min() < fail_rows.min(), "the table should follow the heatmap, pass row before fail row"
    text_band = shot[pass_rows.min():fail_rows.max() + 1]
    assert (text_band.max(-1) < 90).sum() > 200, "no dark text in the check table"
    if shutil.which("dot"):
        assert (shot[fail_rows.max():] == np.array(EDGE_BLUE, dtype=np.uint8)).all(-1).sum() > 50, "no diagram edges drawn"


@pytest.mark.slow  # headless Chromium
@pytest.mark.skipif(chromium() is None, reason="no chromium on PATH or at /usr/bin/chromium (tools/setup.sh installs Debian's)")
def test_chromium_dom_holds_table_rows_image_and_svg(report, tmp_path):
    page, _ = report
    run = browser(["--dump-dom"], page, tmp_path / "profile")
    dom = run.stdout
    assert "</html>" in dom, f"chromium printed no DOM (rc {run.returncode}): {run.stderr[-2000:]}"
    assert dom.count('<tr class="pass">') == 1 and dom.count('<tr class="fail">') == 1
    assert "v_composition" in dom and "faithful &lt;enough&gt;" in dom and "[0.88, 0.97]" in dom
    assert '<img alt="layer x position heatmap" src="data:image/png;base64,' in dom
    if shutil.which("dot"):
        assert re.search(r"<svg[^>]*>", dom) and "L1H0.v" in dom
