"""Codec fuzz: mutated and truncated payloads through ``_core.decode``.

    tools/python tests/codec_fuzz.py --mutations 3000000 [--seed N]
    make stress (runs it after the stress driver)

Payloads are the encodings of a corpus of values (every tag of the codec:
scalars, strings of each width, containers, deep nesting, shared and
recursive references, pickled objects), mutated: bits flipped, bytes set
to tags or edge values, cut short, bytes inserted, deleted or duplicated,
two payloads spliced, varints made huge, garbage appended.  Each must
decode to a value or raise an Exception that is not a SystemError (a C
error path that forgot to set an exception, or left one set); a value that
decodes must survive a GC pass and being encoded again (cleanly or
with a clean exception).  A crash or a hang ends the process: the last
"batch" line printed names the batch, and ``--batch B --trace`` replays it
printing each payload before it is decoded.

Batch b of seed S is drawn from ``random.Random(f"{S}/{b}")`` alone.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import decimal
import faulthandler
import fractions
import gc
import math
import os
import random
import sys
import time
import uuid

from interpool import _core

BATCH = 10_000
# CPython 3.13 and 3.14's pickle prints this (and raises MemoryError) for a
# BYTEARRAY8 whose claimed length is huge, inside a frame: pickle.loads(
# bytes.fromhex("80059522000000000000008c096672616374696f6e73968c0846"
# "72616374696f6e9493944b034b07869498942e")); 3.15 raises UnpicklingError.
# Not the codec's (it hands the bytes to pickle.loads).
PICKLE_BYTEARRAY8 = "SystemError: deallocated bytearray object has exported buffers"
TAGS = b"NFTiIfcsuUbB([{SZP#*HM"
EDGES = [0x00, 0x01, 0x02, 0x7F, 0x80, 0x81, 0xFE, 0xFF]


def corpus(pickled: bool = True) -> list[bytes]:
    """Encodings of values that reach every branch of the decoder (without
    `pickled`: only those that never go through pickle, whose mutations
    cannot make pickle allocate gigabytes)."""
    shared = [1, "x"]
    loop: list = []
    loop.append(loop)
    d: dict = {"k": 1}
    d["self"] = d
    t = ([],)
    t[0].append(t)
    fs = frozenset({1, 2, "a"})
    values = [
        None, True, False, 0, 1, -1, 2**63 - 1, -(2**63), 2**64, -(2**200), 10**400,
        0.0, -0.0, 1.5, math.inf, -math.inf, math.nan, 1e-310, 3 + 4j, complex(math.nan, -0.0),
        "", "ascii", "latin-1 \xe9\xff", "bmp \u20ac\u0101", "astral \U0001f600", "\ud800",
        "x" * 300, b"", b"bytes\x00\xff", bytearray(b"mutable"), bytes(range(256)),
        (), (1,), (1, "a", (2.5, None)), [], [1, [2, [3, [4]]]], {}, {"a": 1, 2: "b", (1, 2): [3]},
        {1, 2, 3}, frozenset(), fs, {fs: fs, "l": [fs, fs]},
        [shared, shared, {"s": shared}], loop, d, t,
        [[i, str(i), float(i)] for i in range(40)],
        {str(i): {"id": i, "tags": ["a", "b"], "v": i / 3} for i in range(30)},
    ]
    pickles = [
        decimal.Decimal("1.25"), fractions.Fraction(3, 7), datetime.datetime(2026, 1, 2, 3, 4, 5),
        datetime.date(2026, 1, 2), uuid.UUID(int=12345), collections.OrderedDict(a=1, b=2),
        collections.deque([1, 2, 3]), collections.Counter("hello"), range(3, 30, 3),
        [decimal.Decimal("2.5"), {"nested": (fractions.Fraction(1, 3),)}],
    ]
    if pickled:
        values += pickles
    nested: object = None
    for _ in range(150):
        nested = [nested]
    values.append(nested)
    dag: object = 1
    for _ in range(30):   # each level twice: a memo scope keeps it linear
        dag = {"d": dag, "t": (dag,)}
    values.append(dag)
    return [_core.encode(v) for v in values]


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def mutate(rng: random.Random, payloads: list[bytes]) -> bytes:
    data = bytearray(rng.choice(payloads))
    for _ in range(rng.choice([1, 1, 1, 2, 3, 5])):
        op = rng.randrange(10)
        n = len(data)
        i = rng.randrange(n + 1) if n else 0
        if op == 0 and n:                      # flip bits
            data[min(i, n - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:                    # a tag or an edge value
            data[min(i, n - 1)] = rng.choice(TAGS) if rng.random() < 0.5 else rng.choice(EDGES)
        elif op == 2 and n:                    # any byte
            data[min(i, n - 1)] = rng.randrange(256)
        elif op == 3:                          # cut short
            del data[i:]
        elif op == 4:                          # insert
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif op == 5 and n:                    # delete a range
            del data[i:i + rng.randint(1, 8)]
        elif op == 6 and n:                    # duplicate a range
            j = rng.randrange(n)
            data[i:i] = data[j:j + rng.randint(1, 16)]
        elif op == 7:                          # splice another payload in
            other = rng.choice(payloads)
            j = rng.randrange(len(other) + 1)
            data[i:] = other[j:]
        elif op == 8:                          # a huge or odd varint
            data[i:i] = varint(rng.choice([0, 1, 127, 128, 2**31, 2**32 + 1, 2**62, 2**64 - 1]))
        else:                                  # garbage after the value
            data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
    return bytes(data)


class Unclean(Exception):
    pass


class Printed:
    """sys.stderr while decoding: CPython prints some errors it cannot
    raise (a bytearray freed with exports, an exception ignored)."""

    def __init__(self) -> None:
        self.text: list[str] = []

    def write(self, text: str) -> int:
        self.text.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def check_one(data: bytes, collect: bool = False) -> None:
    """decode(data) gives a value or a clean exception; a value can be
    encoded again, and (with `collect`) the GC walks it."""
    try:
        value = _core.decode(data)
    except SystemError as exc:
        raise Unclean(f"SystemError from decode: {exc!r}") from exc
    except Exception:
        return
    except BaseException as exc:   # noqa: BLE001 - what must never come out of decode
        raise Unclean(f"{type(exc).__name__} from decode: {exc!r}") from exc
    try:
        _core.encode(value)
    except SystemError as exc:
        raise Unclean(f"SystemError re-encoding a decoded value: {exc!r}") from exc
    except Exception:
        pass
    if collect:
        gc.collect()   # with the value alive: its links must be sound


def run(seed: int, mutations: int, first_batch: int = 0, trace: bool = False,
        quiet: bool = False, hang: float = 120.0) -> int:
    payloads = corpus()
    batches = max(1, -(-mutations // BATCH))
    start = time.monotonic()
    for b in range(first_batch, first_batch + batches):
        if not quiet:
            print(f"batch {b}", flush=True)
        faulthandler.dump_traceback_later(hang, exit=True)
        rng = random.Random(f"{seed}/{b}")
        for k in range(BATCH):
            data = mutate(rng, payloads)
            if trace:
                print(f"{b}:{k} {data.hex()}", file=sys.stderr, flush=True)
            printed = Printed()
            sys.stderr = printed
            try:
                check_one(data, collect=k % 2000 == 0)
                text = "".join(printed.text).strip()
                if text and not (text == PICKLE_BYTEARRAY8 and sys.version_info < (3, 15)):
                    raise Unclean(f"printed while decoding: {text}")
            except Unclean as exc:
                sys.stderr = sys.__stderr__
                print(f"codec fuzz: {exc}\npayload {data.hex()}\nseed {seed}, batch {b}, "
                      f"mutation {k}; replay: tools/python tests/codec_fuzz.py --seed {seed} "
                      f"--batch {b} --mutations {BATCH}", flush=True)
                return 1
            finally:
                sys.stderr = sys.__stderr__
    faulthandler.cancel_dump_traceback_later()
    print(f"codec fuzz: {batches * BATCH} mutations of {len(payloads)} payloads, all clean, "
          f"in {time.monotonic() - start:.0f}s (seed {seed})", flush=True)
    return 0


def cap_memory(extra: int = 1 << 30) -> None:
    """Let allocations fail fast past `extra` more bytes of address space:
    a mutated pickle may claim a memo index or a length of gigabytes, which
    pickle would otherwise allocate and fill (seconds, on a shared machine).
    Not under ASan, which reserves terabytes of shadow memory."""
    if os.environ.get("INTERPOOL_ASAN"):
        return
    import resource

    with open("/proc/self/status") as status:
        vm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra, resource.getrlimit(resource.RLIMIT_AS)[1]))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--mutations", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=0, help="start at this batch")
    parser.add_argument("--trace", action="store_true", help="print each payload first")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    cap_memory()
    print(f"codec fuzz: seed {seed}, {args.mutations} mutations from batch {args.batch} "
          f"(replay: tools/python tests/codec_fuzz.py --seed {seed} --mutations {args.mutations})",
          flush=True)
    return run(seed, args.mutations, args.batch, args.trace, args.quiet)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
