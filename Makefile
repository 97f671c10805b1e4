# Everything a fresh machine needs (Python 3.11+, Node 20+, the package registries) is installed here.
PYTHON ?= python3
VENV := .venv
CHECKOV_VENV := .venv-checkov
SDK_V2_VENV := .venv-sdk-v2
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export PYTHONPATH := $(CURDIR):$(CURDIR)/containers/jax-llm

.PHONY: setup test demo synth lock clean

setup: $(VENV)/.installed $(CHECKOV_VENV)/.installed $(SDK_V2_VENV)/.installed node_modules/.installed

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

test: setup
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
