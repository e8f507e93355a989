"""A script run as __main__ by test_lifecycle.py (copied to a temporary dir).

Its functions and classes live in __main__, so they travel by value: workers
never run this file, and its module level runs once, in the caller.

Usage: python helpers_main_script.py MODE DIRECTORY
Every interpreter that runs the module level appends its __name__ to the file
named by $INTERPOOL_TEST_RECORD.
"""

import dataclasses
import os
import sys

import helpers_tasks
import interpool

with open(os.environ["INTERPOOL_TEST_RECORD"], "a") as record:
    record.write(__name__ + "\n")


@dataclasses.dataclass
class Box:
    value: object


class ScriptError(Exception):
    pass


def task(directory, token):
    # A two-party barrier: both workers must run (and so load this script).
    helpers_tasks.barrier(directory, 2, token)
    return __name__, Box(token)


def unbox(box):
    return box.value


def fail(message):
    raise ScriptError(message)


def main(mode, directory):
    print("MAIN BLOCK", flush=True)
    if mode == "functions":
        with interpool.Pool(2) as pool:
            futures = [pool.submit(task, directory, token) for token in "ab"]
            results = [f.result(60) for f in futures]
            # The globals they read are the script's: __name__ included.
            assert {name for name, _ in results} == {"__main__"}, results
            assert all(type(box) is Box for _, box in results), results
            print("RESULT", sorted(box.value for _, box in results))
            print("UNBOX", pool.submit(unbox, Box(5)).result(60))
            print("MAP", list(pool.map(unbox, [Box(1), Box(2)], chunksize=2)))
            try:
                pool.submit(fail, "from the script").result(60)
            except ScriptError as exc:
                print("SCRIPT ERROR", exc)
    elif mode == "argument":
        # The first task of a fresh worker takes a __main__ object as an
        # argument, but its function is not from __main__.
        with interpool.Pool(1) as pool:
            print("ARGUMENT", pool.submit(helpers_tasks.identity, Box(7)).result(60))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
