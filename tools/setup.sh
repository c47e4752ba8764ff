#!/usr/bin/env bash
# Create .venv and install pathpatch with its test tools. Idempotent: skips what is already there.
# Torch: a CPU build where there is no NVIDIA GPU (torch==2.13.0 resolves to a local CPU wheel on the
# project's machines), the default CUDA build where `nvidia-smi` finds a GPU.
# Graphviz's `dot` binary comes from Debian's graphviz package when running as root with apt-get.
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
pip_install -e ".[test]"
"$VENV/bin/python" -c "import pathpatch, transformer_lens" # fail loudly if the install did not take

if ! command -v dot >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing Debian's graphviz for the dot binary"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null) \
            || echo "setup: could not install graphviz; diagrams will be written as .dot only"
    else
        echo "setup: Graphviz 'dot' not found; install it (apt-get install graphviz) to render SVG/PNG."
    fi
fi
