# Set-up and the two top-level jobs. Everything runs in ./.venv with the CPU build of torch
# pinned through constraints-cpu.txt (the package itself accepts a range of torch versions).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints-cpu.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints-cpu.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The main job: data -> tokenizer -> pre-training -> validation -> sample -> HF export, on CPU.
demo: $(STAMP)
	$(BIN)/lit-llm demo --out runs/demo

## The test suite (core, CPU, a few minutes).
test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs build dist *.egg-info
