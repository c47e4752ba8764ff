# Two entry points do all the set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
STAMP := $(VENV)/.pathpatch-installed

.PHONY: demo test test-slow setup clean pictures

$(STAMP): pyproject.toml tools/setup.sh
	VENV=$(VENV) bash tools/setup.sh
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pathpatch models
	$(VENV)/bin/pathpatch discover --model permute --out out/permute
	$(VENV)/bin/pathpatch check hypotheses/permute.toml --circuit out/permute/circuit.json --out out/permute/check
	$(VENV)/bin/pathpatch draw out/permute/circuit.json -o out/permute/circuit.png

pictures: $(STAMP)
	$(VENV)/bin/python tools/pictures.py

# The fast suite, one worker per core (pytest-xdist); `test-slow` runs what it leaves out (real LM, subprocesses,
# Chromium, benchmarks). CI runs both.
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2

test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 --runslow -m slow

clean:
	rm -rf $(VENV) .pytest_cache
