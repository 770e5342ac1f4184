# The two commands of README.md: `make demo` (main job on the builtin photos) and `make test`.
# `make bench-ldpc` (optional) adds pyldpc for the LDPC throughput comparison.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench bench-ldpc clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,ray]"
	touch $(STAMP)

# pyldpc is only a measured comparison in benchmarks/ldpc_throughput.py. It is an sdist whose setup.py imports
# numpy, so it cannot be built in pip's isolated build environment: build it against the venv's numpy (pinned to
# the installed version so that the rest of the environment is left as it is).
PYLDPC := $(VENV)/.pyldpc
$(PYLDPC): $(STAMP)
	$(BIN)/python -m pip install -q setuptools wheel
	$(BIN)/python -m pip install -q --no-build-isolation "pyldpc>=0.7" \
		"numpy==$$($(BIN)/python -c 'import numpy; print(numpy.__version__)')"
	touch $(PYLDPC)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lrisc-sim sweep --snr 0:15:5 --cbr 1/48 --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/sweep_throughput.py

bench-ldpc: $(PYLDPC)
	$(BIN)/python benchmarks/ldpc_throughput.py $(ARGS)

clean:
	rm -rf $(VENV) runs
