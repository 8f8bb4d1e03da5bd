# Two entry points (see README): `make book` and `make test`. Both set everything up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PROFILE ?= auto

# Use the shared image mirror when it sits beside the checkout (CI, developer machines);
# elsewhere lipkit downloads the images from their public URLs and checks their sha256.
ifneq ($(wildcard ../shared/data),)
export LIPKIT_DATA_MIRROR ?= $(abspath ../shared/data)
endif

.PHONY: install vendor chapters book test unit lab clean

$(VENV)/.installed: requirements.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

# The tests also run the Ray sweep engine: the pinned optional extra (pyproject.toml).
$(VENV)/.test-extras: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e ".[ray]"
	touch $@

vendor:
	./scripts/vendor_js.sh

# Execute the chapters (papermill) with PROFILE, into _build/stage.
chapters: install vendor
	$(BIN)/python scripts/run_chapters.py --profile $(PROFILE)

# The static site: _build/html/index.html
book:
	@$(PYTHON) scripts/timings.py reset
	@$(PYTHON) scripts/timings.py run setup:install -- $(MAKE) --no-print-directory install vendor
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python scripts/run_chapters.py --profile $(PROFILE) --build
	@$(PYTHON) scripts/timings.py report

# The whole test suite. Chapters run once, with the quick profile; the chapter tests and the
# browser test reuse those executed copies and the site built from them. The seconds of every
# phase go to _build/timings.json, summarised at the end (scripts/timings.py).
test:
	@$(PYTHON) scripts/timings.py reset
	@$(PYTHON) scripts/timings.py run setup:install -- $(MAKE) --no-print-directory install vendor $(VENV)/.test-extras
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python scripts/run_chapters.py --profile quick --build
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -p no:cacheprovider -ra; \
	  status=$$?; $(PYTHON) scripts/timings.py report; exit $$status

# Unit tests only (no chapters, no site).
unit: install
	$(BIN)/python -m pytest -p no:cacheprovider -ra -m "not chapter and not site"

lab: install
	$(BIN)/jupyter lab book/

clean:
	rm -rf _build
