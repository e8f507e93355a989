"""Exceptions with awkward constructors, and the tasks that raise them
(test_remote_errors.py)."""

import threading


class TwoArgs(Exception):
    def __init__(self, code, detail):
        super().__init__(f"code {code}: {detail}")
        self.code = code
        self.detail = detail


class KeywordOnly(Exception):
    def __init__(self, message, *, status, retry=False):
        super().__init__(message)
        self.status = status
        self.retry = retry


class NoArgs(Exception):
    def __init__(self):
        super().__init__("fixed message")


class Plain(Exception):
    pass


class HostileInit(Exception):
    """Rebuilding it in the caller raises (whatever CLASS_RAISES holds)."""

    def __init__(self, *args):
        if args and args[0] == "rebuilt":
            raise KeyboardInterrupt("from a hostile __init__")
        super().__init__(*args)

    def __reduce__(self):
        return type(self), ("rebuilt",)


class HostileNew(Exception):
    def __new__(cls, *args, **kwargs):
        if args and args[0] == "again":
            raise SystemExit("from a hostile __new__")
        return super().__new__(cls, *args)

    def __init__(self, *args):
        super().__init__(*args)

    def __reduce__(self):
        return type(self), ("again",)


class CallerHostile(Exception):
    """Cannot be pickled in the worker (a lock); making it in the caller raises."""

    def __new__(cls, *args):
        import _interpreters

        if _interpreters.get_current()[0] == 0:
            raise KeyboardInterrupt("hostile in the caller")
        return super().__new__(cls, *args)

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def raise_caller_hostile():
    raise CallerHostile("original")


def raise_two_args(code, detail):
    raise TwoArgs(code, detail)


def raise_keyword_only(message, status):
    raise KeywordOnly(message, status=status, retry=True)


def raise_no_args():
    raise NoArgs()


def raise_with_extras():
    exc = Plain("with extras")
    exc.extra = {"k": [1, 2]}
    exc.lock = threading.Lock()          # cannot travel: dropped, the rest kept
    exc.add_note("a note")
    raise exc


def raise_group():
    errors = []
    for i, exc in enumerate([TwoArgs(1, "one"), ValueError("two"), KeywordOnly("three", status=3)]):
        try:
            try:
                raise KeyError(i)
            except KeyError as inner:
                raise exc from inner
        except Exception as caught:
            errors.append(caught)
    raise ExceptionGroup("several", errors)


def raise_nested_group():
    try:
        raise_group()
    except ExceptionGroup as group:
        raise ExceptionGroup("outer", [group, Plain("sibling")]) from None


def raise_hostile_init():
    raise HostileInit("original")


def raise_hostile_new():
    raise HostileNew("original")


def raise_os_error(path):
    open(path)
