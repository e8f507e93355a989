"""A task's exception comes back with its type and attributes where the
class can be rebuilt (custom __init__ signatures, keyword-only arguments,
attributes set after construction, ExceptionGroup members with their own
tracebacks); rebuilding never raises anything else in the caller; the
worker-side traceback is the __cause__."""

import asyncio

import pytest

import helpers_errors as he
import interpool


@pytest.fixture(scope="module")
def pool():
    p = interpool.Pool(2)
    assert p.wait_ready(60)
    yield p
    p.shutdown()


def failure(pool, fn, *args):
    exc = pool.submit(fn, *args).exception(60)
    assert exc is not None
    return exc


def test_custom_init_signature(pool):
    exc = failure(pool, he.raise_two_args, 7, "detail")
    assert type(exc) is he.TwoArgs
    assert (exc.code, exc.detail, exc.args) == (7, "detail", ("code 7: detail",))
    assert isinstance(exc.__cause__, interpool.RemoteTraceback)
    assert "raise TwoArgs(code, detail)" in exc.__cause__.text


def test_keyword_only_arguments(pool):
    exc = failure(pool, he.raise_keyword_only, "nope", 503)
    assert type(exc) is he.KeywordOnly
    assert (str(exc), exc.status, exc.retry) == ("nope", 503, True)


def test_init_without_arguments(pool):
    exc = failure(pool, he.raise_no_args)
    assert type(exc) is he.NoArgs and str(exc) == "fixed message"


def test_attributes_set_after_construction(pool):
    exc = failure(pool, he.raise_with_extras)
    assert type(exc) is he.Plain and str(exc) == "with extras"
    assert exc.extra == {"k": [1, 2]}
    assert exc.__notes__ == ["a note"]
    assert not hasattr(exc, "lock")


def test_builtin_exception_attributes(pool, tmp_path):
    exc = failure(pool, he.raise_os_error, str(tmp_path / "missing"))
    assert type(exc) is FileNotFoundError
    assert exc.errno == 2 and exc.filename == str(tmp_path / "missing")


def test_exception_group_keeps_its_members_and_their_tracebacks(pool):
    exc = failure(pool, he.raise_group)
    assert type(exc) is ExceptionGroup and exc.message == "several"
    two, value, kw = exc.exceptions
    assert type(two) is he.TwoArgs and (two.code, two.detail) == (1, "one")
    assert type(value) is ValueError and str(value) == "two"
    assert type(kw) is he.KeywordOnly and kw.status == 3
    for member in exc.exceptions:
        assert isinstance(member.__cause__, interpool.RemoteTraceback)
        assert "raise exc from inner" in member.__cause__.text
        assert "KeyError" in member.__cause__.text            # its own cause, as text
    assert isinstance(exc.__cause__, interpool.RemoteTraceback)
    assert "raise_group" in exc.__cause__.text


def test_nested_groups(pool):
    exc = failure(pool, he.raise_nested_group)
    assert type(exc) is ExceptionGroup and exc.message == "outer"
    inner, sibling = exc.exceptions
    assert type(inner) is ExceptionGroup and len(inner.exceptions) == 3
    assert type(inner.exceptions[0]) is he.TwoArgs
    assert type(sibling) is he.Plain


@pytest.mark.parametrize("fn", [he.raise_hostile_init, he.raise_hostile_new, he.raise_caller_hostile])
def test_a_class_whose_rebuilding_raises_becomes_remote_error(pool, fn):
    exc = failure(pool, fn)
    assert type(exc) is interpool.RemoteError
    assert exc.type_name.startswith(("helpers_errors.Hostile", "helpers_errors.CallerHostile"))
    assert "original" in exc.message
    assert isinstance(exc.__cause__, interpool.RemoteTraceback)
    assert fn.__name__ in exc.__cause__.text
    # the pool is fine, and so is the asyncio front door
    async def main():
        with pytest.raises(interpool.RemoteError):
            await pool.run(fn)
        return await pool.run(abs, -3)

    assert asyncio.run(main()) == 3
