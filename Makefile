# Two entry points for a fresh machine: `make demo` (set up + demo training) and `make test`.
# Set-up: a virtual environment in .venv with the CPU torch installed FIRST and pinned, so no
# resolver ever swaps in a multi-GB CUDA build; then the project with its dev extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
# the demo's model is tiny: one thread per process keeps its timing predictable on shared cores
DEMO_THREADS ?= 1
# the rehearsal's CPU ranks (the paper: 8 GPUs); STEPS=N shortens it (CI: RANKS=2 STEPS=2)
RANKS ?= 8

.PHONY: setup demo test test-vllm vllm-env clean-artifacts

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q '$(TORCH)'
	$(PY) -m pip install -q -e '.[dev]' '$(TORCH)'
	# GeoCLIP's released weights and GPS gallery (globe.retrieval reads the files, weights only);
	# no deps: its torchvision requirement would pull the registry's CUDA build
	$(PY) -m pip install -q --no-deps 'geoclip==1.3.0'
	touch $@

setup: $(VENV)/.installed

# warm start (300 supervised steps) + 60 GRPO steps, then the test set before and after GRPO
demo: setup
	OMP_NUM_THREADS=$(DEMO_THREADS) $(PY) cli.py fit --config configs/demo.yaml
	OMP_NUM_THREADS=$(DEMO_THREADS) $(PY) cli.py test --config configs/demo.yaml --ckpt_path artifacts/demo/checkpoints/step=300.ckpt \
		--model.init_args.predictions_csv artifacts/demo/predictions_warm_start.csv
	OMP_NUM_THREADS=$(DEMO_THREADS) $(PY) cli.py test --config configs/demo.yaml --ckpt_path artifacts/demo/checkpoints/last.ckpt \
		--model.init_args.predictions_csv artifacts/demo/predictions_grpo.csv

test: setup
	$(PY) -m pytest -q

# vLLM (CPU build) lives in its own environment: it pins its own torch/transformers.
vllm-env:
	bash .ci/vllm_env

test-vllm: vllm-env
	GLOBE_REQUIRE_VLLM=1 .venv-vllm/bin/python -m pytest -q tests/vllm

clean-artifacts:
	rm -rf artifacts lightning_logs wandb

.PHONY: rehearsal
# the paper pipeline on the CPU with the shipped paper configs (docs/rehearsal.md)
rehearsal: setup
	$(PY) benchmarks/rehearsal.py --ranks $(RANKS) $(if $(STEPS),--steps $(STEPS),)
