# The two commands of the README: `make demo` (install + the main job) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch 2.13.0's CPU wheel is on these machines' local wheel index; elsewhere pip fetches it.
TORCH  ?= torch==2.13.0
DEMO   ?= demo

.PHONY: install demo detect-demo test clean

$(BIN)/ladsdin: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(BIN)/ladsdin

# The main job on its embedded default: a Menyuan-like frame streamed through the detector
# (embedded Kafka-wire broker and Valkey, started and stopped by the command).
demo: install
	$(BIN)/ladsdin demo --out $(DEMO)

# The paper's offline workflow on the same kind of frame, with the figures.
detect-demo: install
	$(BIN)/ladsdin simulate --preset menyuan --track A --out $(DEMO)/menyuan_A.nc
	$(BIN)/ladsdin detect $(DEMO)/menyuan_A.nc --out $(DEMO)/menyuan_A --seismic-area-km2 100 --plots
	@echo "outputs: $(DEMO)/menyuan_A/{alerts.geojson,anomalies.nc,summary.json,plots/*.png}"

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .hypothesis
