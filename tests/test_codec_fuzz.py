"""Codec fuzz (tests/codec_fuzz.py) in the suite: mutated and truncated
payloads through ``_core.decode`` give a value or a clean exception, never
a crash.

A quick run in a subprocess (a crash there names the seed and batch
instead of taking pytest down), hypothesis-driven mutations in process
(they shrink a failure to a small payload), and every truncation of every
corpus payload.  ``make stress`` runs millions of mutations.
"""

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import codec_fuzz
from helpers_util import TESTS_DIR, subprocess_env
from interpool import _core

PAYLOADS = codec_fuzz.corpus()
# In process, no pickle inside: a mutated pickle may make pickle allocate
# gigabytes (the subprocess run caps its memory for those).
NATIVE = codec_fuzz.corpus(pickled=False)


@pytest.mark.timeout(600)
def test_quick_fuzz_run():
    proc = subprocess.run(
        [sys.executable, os.path.join(TESTS_DIR, "codec_fuzz.py"), "--seed", "20261201",
         "--mutations", "200000"],
        cwd=TESTS_DIR, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert "all clean" in proc.stdout, proc.stdout[-5000:]


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_mutated_payloads_decode_cleanly(data):
    payload = bytearray(data.draw(st.sampled_from(NATIVE)))
    for _ in range(data.draw(st.integers(1, 4))):
        if not payload:
            break
        i = data.draw(st.integers(0, len(payload) - 1))
        op = data.draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        byte = data.draw(st.sampled_from(list(codec_fuzz.TAGS) + codec_fuzz.EDGES
                                         + [data.draw(st.integers(0, 255))]))
        if op == "set":
            payload[i] = byte
        elif op == "insert":
            payload.insert(i, byte)
        elif op == "delete":
            del payload[i]
        else:
            del payload[i:]
    codec_fuzz.check_one(bytes(payload), collect=False)


@pytest.mark.parametrize("index", range(len(PAYLOADS)))
def test_every_truncation_is_refused(index):
    payload = PAYLOADS[index]
    _core.decode(payload)
    for cut in range(len(payload)):
        with pytest.raises(_core.CodecError):
            _core.decode(payload[:cut])
