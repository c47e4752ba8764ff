"""The README's own-model example, run as a new user would: its files written out, its commands run."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pathpatch.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def examples() -> dict[str, str]:
    """The code blocks marked ``<!-- readme-example: NAME -->`` in the README, by name."""
    found = re.findall(r"<!-- readme-example: (\S+) -->\n```\w*\n(.*?)```", README.read_text(), flags=re.S)
    return dict(found)


def test_the_readme_marks_its_example_blocks():
    assert set(examples()) == {"make_model.py", "my_circuit.toml", "shell", "python"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("readme")
    blocks = examples()
    for name in ("make_model.py", "my_circuit.toml"):
        (folder / name).write_text(blocks[name])
    return folder


@pytest.mark.slow  # fresh interpreters
def test_the_readme_shell_example_runs_and_its_claims_pass(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    for line in examples()["shell"].splitlines():
        argv = shlex.split(line.split("#")[0])
        if argv[:1] == ["python"]:
            subprocess.run([sys.executable, *argv[1:]], check=True, cwd=workdir)
        else:
            assert argv[0] == "pathpatch"
            assert main(argv[1:]) == 0, capsys.readouterr().err
    assert (workdir / "out" / "mine" / "circuit.json").exists()
    assert "PASS" in (workdir / "out" / "mine-check" / "check.md").read_text()


@pytest.mark.slow  # a fresh interpreter
def test_the_readme_python_example_runs(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    if not (workdir / "my_model" / "weights.pt").exists():
        subprocess.run([sys.executable, "make_model.py"], check=True, cwd=workdir)
    namespace: dict = {}
    exec(compile(examples()["python"], "README.md", "exec"), namespace)
    assert namespace["report"].passed and (workdir / "out" / "mine-eap" / "scores.csv").exists()
