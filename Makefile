# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export RAY_AUTH_MODE := disabled
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo demo-scripted train-tiny test test-fast bench clean

$(BIN)/.installed: pyproject.toml constraints-cpu.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first from the CPU wheel, pinned by the constraints file so nothing pulls CUDA wheels
	$(BIN)/pip install -q -c constraints-cpu.txt "torch==2.13.0+cpu"
	$(BIN)/pip install -q -c constraints-cpu.txt -e ".[test]"
	touch $@

venv: $(BIN)/.installed

# the main job: data → stage-1 SFT → stage-2 RL (TRACE + OPD) of a tiny Qwen-VL through verl, evaluation, report
demo: venv
	$(BIN)/python -m hyperseyes_verl.demo.train --out outputs/demo

# the scripted strategies alone in the search environment (no training; well under a minute)
demo-scripted: venv
	$(BIN)/hyperseyes demo --out outputs/demo_scripted

# the two-stage recipe at toy size through verl's entry points on CPU (~4 min on 2 cores): outputs/train_tiny/
train-tiny: venv
	$(BIN)/python -m hyperseyes_verl.demo.tiny --out outputs/train_tiny

# two pytest workers, a test file each at a time, the end-to-end files first (tests/conftest.py): the pipeline
# runs beside the rest of the suite instead of after it
TEST_WORKERS ?= 2
test: venv
	$(BIN)/python -m pytest -q -x -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

# the pure core, ≈ 60 s on 2 cores: leaves out tests marked verl (verl, Ray, training subprocesses), slow and e2e
test-fast: venv
	$(BIN)/python -m pytest -q -x -n $(TEST_WORKERS) -m "not verl and not slow and not e2e" --durations=5

bench: venv
	for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) outputs .pytest_cache
