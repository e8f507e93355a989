# interpool: the verbs.  Everything runs through tools/python, which provisions
# CPython 3.14/3.15 (a cached Debian sid root filesystem) when this machine
# has no native python3.14 with headers.
PY := tools/python
PYTEST := $(PY) -m pytest -q

.PHONY: test test-3.14 test-3.15 bench bench-quick examples asan clean

test: test-3.14 test-3.15 bench-quick

test-3.14:
	tools/provision
	PYTHON_VERSION=3.14 $(PYTEST)

test-3.15:
	PYTHON_VERSION=3.15 $(PYTEST)

bench:
	$(PY) benchmarks/run.py

bench-quick:
	$(PY) benchmarks/run.py --quick --out /tmp/interpool-bench-quick

examples:
	$(PYTEST) tests/test_examples.py

# AddressSanitizer + UBSan build of the extension, then the suite (slow).
asan:
	INTERPOOL_ASAN=1 INTERPOOL_WERROR=0 \
	INTERPOOL_CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" \
	ASAN_OPTIONS=detect_leaks=0 $(PYTEST) -x -p no:faulthandler

clean:
	rm -rf build dist src/*.egg-info bench-results
	rm -f src/interpool/*.so src/interpool/*.so.flags
