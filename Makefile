# Everything a fresh machine needs (Python 3.11+, Node.js LTS, the package registries) is installed here.
# Node: the releases the pinned CDK's jsii runtime supports (it names them when it starts on any other;
# the pinned CLI's AWS SDK asks for 22+ too). 20 and the odd releases still run, with a warning;
# anything below 20 stops setup. See docs/contributing.md#nodejs.
NODE_SUPPORTED := 22 24
NODE_MINIMUM := 20
PYTHON ?= python3
VENV := .venv
CHECKOV_VENV := .venv-checkov
SDK_V2_VENV := .venv-sdk-v2
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export PYTHONPATH := $(CURDIR):$(CURDIR)/containers/jax-llm

.PHONY: setup check-node lint test demo synth lock clean

setup: check-node $(VENV)/.installed $(CHECKOV_VENV)/.installed $(SDK_V2_VENV)/.installed node_modules/.installed

check-node:
	@want="Node.js $(firstword $(NODE_SUPPORTED)) or $(lastword $(NODE_SUPPORTED)) (LTS)"; \
	found=$$(node -p 'process.versions.node' 2>/dev/null) || { \
		echo "Node.js not found (or it does not run): the CDK CLI needs $$want" >&2; exit 1; }; \
	major=$${found%%.*}; \
	if [ "$$major" -lt $(NODE_MINIMUM) ]; then \
		echo "Node.js $$found found; the pinned CDK needs $$want, and $(NODE_MINIMUM) at the very least" >&2; exit 1; \
	fi; \
	case " $(NODE_SUPPORTED) " in *" $$major "*) ;; *) \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2; \
		echo "!! WARNING: Node.js $$found found; the pinned CDK supports $$want." >&2; \
		echo "!! It still runs for now (the CDK prints the same warning); install $$want." >&2; \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2;; \
	esac

$(VENV)/.installed: requirements.txt containers/jax-llm/requirements.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet -r requirements-checkov.txt
	touch $@

# SDK v2 (`sagemaker<3`) beside the project's v3: the image tests run the seed's v2 calls with it.
$(SDK_V2_VENV)/.installed: requirements-sdk-v2.txt
	$(PYTHON) -m venv $(SDK_V2_VENV)
	$(SDK_V2_VENV)/bin/pip install --quiet -r requirements-sdk-v2.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# Fast offline checks first (seconds): ruff's lint and format rules (pyproject.toml) and actionlint on
# .github/workflows; then the test suite.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/actionlint

test: setup lint
	$(VENV)/bin/python -m pytest

demo: setup
	$(VENV)/bin/python -m local_mode demo

synth: setup
	cdk synth --quiet

# The image's complete dependency sets with hashes, for the Python of its Debian 12 base on x86_64.
# Run after changing containers/jax-llm/requirements*.txt; the image installs only these.
LOCK := $(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock"
lock: setup
	cd containers/jax-llm && ../../$(LOCK) requirements.txt -o requirements.lock \
		&& ../../$(LOCK) requirements-cuda.txt -o requirements-cuda.lock

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(SDK_V2_VENV) node_modules cdk.out .pytest_cache
