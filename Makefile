# The two commands of README.md: `make demo` (main job on the builtin photos) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,ray]"
	$(BIN)/python -m pip install -q --no-build-isolation "pyldpc>=0.7"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lrisc-sim sweep --snr 0:15:5 --cbr 1/48 --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/sweep_throughput.py

clean:
	rm -rf $(VENV) runs
