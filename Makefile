# Two commands do all the set-up on a fresh machine:
#   make demo   create .venv, install, inspect + convert + verify a bundled sample model
#   make test   create .venv, install, run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TOOL   := $(VENV)/bin/tflite-inverter
DEMO_MODEL ?= models/int8_uint8_io.tflite

.PHONY: demo test lint venv models bench clean

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: venv
	$(TOOL) inspect $(DEMO_MODEL) --target imx8mp
	@if $(TOOL) convert --help >/dev/null 2>&1; then \
	  $(TOOL) convert $(DEMO_MODEL) -o demo-out/saved_model --force; fi

test: venv
	$(PY) -m pytest -q -p no:cacheprovider

lint: venv
	$(VENV)/bin/ruff check tflite_inverter tests models benchmarks

models: venv
	$(PY) models/generate.py

bench: venv
	$(PY) benchmarks/bench_reader.py

clean:
	rm -rf $(VENV) demo-out build *.egg-info
