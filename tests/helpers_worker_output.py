"""Task functions for test_output.py.  Does not import logging at module
level: a worker imports it only if a task does."""

import sys
import time


def say(*lines, end="\n", err=False):
    stream = sys.stderr if err else sys.stdout
    for line in lines:
        print(line, end=end, file=stream)
    return len(lines)


def say_then_return(text, value):
    print(text)
    return value


def partial_line(text):
    sys.stdout.write(text)          # no newline: flushed before the result
    return "done"


def many_lines(tag, count, width):
    for i in range(count):
        print(f"<{tag}:{i}:" + "x" * width + f":{tag}>")
    return count


def logging_loaded():
    return "logging" in sys.modules


def log(name, level, message, *args):
    import logging

    logging.getLogger(name).log(level, message, *args)
    return True


def log_exception(name):
    import logging

    try:
        raise ValueError("bad value")
    except ValueError:
        logging.getLogger(name).exception("it failed")
    return True


async def say_async(text):
    import asyncio

    await asyncio.sleep(0)
    print(text)
    return text


def slow(seconds):
    time.sleep(seconds)
    return seconds
