# Two commands do all the set-up on a fresh machine:
#   make demo   create .venv, install, inspect + convert + verify a bundled sample model
#   make test   create .venv, install, run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TOOL   := $(VENV)/bin/tflite-inverter
DEMO_MODEL ?= models/int8_uint8_io.tflite
# Test processes: one per core of the CI machine (2); `make test TEST_WORKERS=0` runs in-process.
TEST_WORKERS ?= 2
# The whole run always ends: pytest-timeout fails a hanging test, a crashed worker is replaced once
# (pytest-xdist hangs on repeated restarts with --dist loadfile), and the run is killed after this.
TEST_TIME_LIMIT ?= 45m

.PHONY: demo test lint venv models bench clean

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,micro]'
	touch $@

demo: venv
	@echo "== 1. inspect: what the model contains, what survives, what the i.MX8M Plus NPU would run"
	$(TOOL) inspect models/float32.tflite --target imx8mp
	@echo "== 2. convert: rebuild a full-integer (uint8 I/O) model as a SavedModel, verified against the interpreter"
	$(TOOL) convert $(DEMO_MODEL) -o demo-out/saved_model --force
	@echo "== 3. quantize: the float model to full-integer int8 for the i.MX8M Plus, calibrated on images"
	$(TOOL) quantize models/float32.tflite -o demo-out/model_imx8mp.tflite --calib models/calib \
	  --mean 127.5 --std 127.5 --target imx8mp --report demo-out/quantize_report.json --force
	@echo "== 4. inspect the result"
	$(TOOL) inspect demo-out/model_imx8mp.tflite --target imx8mp --format markdown

test: venv
	timeout --kill-after=60 $(TEST_TIME_LIMIT) $(PY) -m pytest -q -p no:cacheprovider --durations=15 \
	  -n $(TEST_WORKERS) --dist loadfile --max-worker-restart 1

lint: venv
	$(VENV)/bin/ruff check tflite_inverter tests models benchmarks

models: venv
	$(PY) models/generate.py

bench: venv
	$(PY) benchmarks/bench_reader.py

clean:
	rm -rf $(VENV) demo-out build *.egg-info
