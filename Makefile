# interpool: the verbs.  Everything runs through tools/python, which provisions
# CPython 3.14/3.15 (a cached Debian sid root filesystem) when this machine
# has no native python3.14 with headers.
PY := tools/python
PYTEST := $(PY) -m pytest -q

.PHONY: test test-3.13 test-3.14 test-3.15 check-layers docs debug-test refleak bench bench-quick examples asan clean wheel-check peers stress stress-one

test: check-layers docs test-3.14 test-3.13 test-3.15 debug-test refleak bench-quick wheel-check

# The C core keeps its layers and no two files (C or Python) depend on each
# other in a circle (tools/check_layers.py).
check-layers:
	tools/provision
	$(PY) tools/check_layers.py --symbols

# The documentation (docs/, Sphinx + MyST from the root filesystem): HTML in
# docs/_build/html, then the examples marked as tests run (doctest builder).
# Warnings are errors.
SPHINX := $(PY) -m sphinx -W --keep-going -q -d docs/_build/doctrees
docs:
	tools/provision
	$(SPHINX) -b html docs docs/_build/html
	$(SPHINX) -b doctest docs docs/_build/doctest

test-3.14:
	tools/provision
	PYTHON_VERSION=3.14 $(PYTEST)

test-3.13:
	PYTHON_VERSION=3.13 $(PYTEST)

test-3.15:
	PYTHON_VERSION=3.15 $(PYTEST)

# The suite against a debug build of the extension: -O0 -g, assert() on the
# core's invariants (refcounts, task states, locks held).
debug-test:
	INTERPOOL_DEBUG=1 $(PYTEST) -p no:faulthandler

# Reference leaks, in the style of CPython's -R, on Debian's python3.14-dbg.
refleak:
	PYTHON_VERSION=3.14-dbg $(PY) tools/refleak.py

# The third-party peers (pinned, installed apart from the system's packages
# once; a stamp makes it a no-op after that).  Without them the benchmark
# prints a SKIP line per peer.
bench:
	tools/peers || echo "make bench: peers not installed; their rows will be skipped" >&2
	$(PY) benchmarks/run.py

bench-quick:
	$(PY) benchmarks/run.py --quick --out /tmp/interpool-bench-quick

peers:
	tools/peers

# sdist + wheel from a clean copy, installed in fresh venvs, README examples
# run outside the repository, on 3.14 and 3.15 (needs PyPI; about a minute).
wheel-check:
	tools/check_wheel

examples:
	$(PYTEST) tests/test_examples.py

# AddressSanitizer + UBSan build of the extension, then the suite (slow).
ASAN_ENV := INTERPOOL_ASAN=1 INTERPOOL_WERROR=0 \
	INTERPOOL_CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" \
	ASAN_OPTIONS=detect_leaks=0
asan:
	$(ASAN_ENV) $(PYTEST) -x -p no:faulthandler

# The stress driver (tests/stress_driver.py: random scenarios over the whole
# API from several threads and event loops, invariants checked each round)
# for DURATION seconds, then FUZZ codec mutations (tests/codec_fuzz.py), on
# each build of BUILD in turn: `make stress DURATION=600` runs all three,
# `make stress BUILD=debug` one.  Every run prints its seed; a failing one
# prints the command that replays it (SEED=..., ROUND=... for one round,
# SCENARIOS=a,b to narrow the mix; the driver's --help says more).
DURATION ?= 600
BUILD ?= release debug asan
FUZZ ?= 3000000
SEED ?=
ROUND ?=
SCENARIOS ?=
STRESS_ENV_release :=
STRESS_ENV_debug := INTERPOOL_DEBUG=1
STRESS_ENV_asan := $(ASAN_ENV)
# A mutated pickle may claim gigabytes: a failed allocation, not an ASan abort.
FUZZ_ENV_asan := ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=512
# Seconds one scenario's wait may take before it counts as a hang: far
# above a round's few seconds, more for the slower builds.
STRESS_HANG_release := 120
STRESS_HANG_debug := 180
STRESS_HANG_asan := 300
stress:
	@for b in $(BUILD); do $(MAKE) --no-print-directory stress-one STRESS_BUILD=$$b || exit $$?; done

stress-one:
	@case "$(STRESS_BUILD)" in release|debug|asan) ;; *) echo "BUILD is release, debug or asan" >&2; exit 2;; esac
	$(STRESS_ENV_$(STRESS_BUILD)) INTERPOOL_STRESS_BUILD=$(STRESS_BUILD) $(PY) tests/stress_driver.py \
		--duration $(DURATION) --hang $(STRESS_HANG_$(STRESS_BUILD)) $(if $(SEED),--seed $(SEED)) \
		$(if $(ROUND),--round $(ROUND)) $(if $(SCENARIOS),--scenarios $(SCENARIOS))
	$(if $(ROUND),,$(STRESS_ENV_$(STRESS_BUILD)) $(FUZZ_ENV_$(STRESS_BUILD)) $(PY) tests/codec_fuzz.py \
		--quiet --mutations $(FUZZ) $(if $(SEED),--seed $(SEED)))

clean:
	rm -rf build dist src/*.egg-info bench-results docs/_build
	rm -f src/interpool/*.so src/interpool/*.so.flags
