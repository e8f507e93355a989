# interpool: the verbs.  Everything runs through tools/python, which provisions
# CPython 3.14/3.15 (a cached Debian sid root filesystem) when this machine
# has no native python3.14 with headers.
PY := tools/python
PYTEST := $(PY) -m pytest -q

.PHONY: test test-3.13 test-3.14 test-3.15 check-layers docs debug-test refleak bench bench-quick examples asan clean wheel-check peers

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
asan:
	INTERPOOL_ASAN=1 INTERPOOL_WERROR=0 \
	INTERPOOL_CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" \
	ASAN_OPTIONS=detect_leaks=0 $(PYTEST) -x -p no:faulthandler

clean:
	rm -rf build dist src/*.egg-info bench-results docs/_build
	rm -f src/interpool/*.so src/interpool/*.so.flags
