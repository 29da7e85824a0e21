# Two commands do everything on a fresh machine with Python 3.11 and make:
#   make demo   - the Gradio demo on the shipped model
#   make test   - the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[build,app,dev]"
	# mediapipe pins absl-py~=2.3, tensorflow-model-optimization asks for ~=1.2 but works with 2.x:
	# a second resolve lets both install (pip prints a warning about it).
	$(BIN)/pip install --quiet "mediapipe==1.2.2" 2>&1 | grep -v "absl-py" || true
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/skinlesion app

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.pipeline
	$(BIN)/python -m edge bench models/pretrained/ham10000 --threads 1,2 --variant all
	$(BIN)/python -m benchmarks.app_load --bundle models/pretrained/ham10000

clean:
	rm -rf $(VENV)
