"""interpool as a user's type checker sees it.

- tests/typing_cases/typed_program.py (and typed_multiprocessing.py,
  typed_anyio.py), typed programs full of ``typing.assert_type``, must pass
  ``mypy --strict`` and basedpyright in strict mode with no error (and run);
- tests/typing_cases/typed_mistakes.py must get exactly the errors its
  ``# E: <codes>`` comments announce (basedpyright: an error on exactly
  those lines);
- the package's public API is complete for type checkers
  (``basedpyright --verifytypes``: every exported name has a known type);
- the package's names are explicit re-exports for type checkers, yet still
  loaded lazily at run time, so worker interpreters import no typing,
  asyncio or concurrent.futures at start-up.

The mypy checks skip (with the reason) where mypy is not installed.
basedpyright comes from PyPI (``tools/basedpyright.py`` installs a pinned
version once, apart from the system's packages): without PyPI its checks
skip, except under CI=true, where they fail.
"""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

import helpers_typing as ht
import interpool

CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "typing_cases")
PROGRAM = "typed_program.py"
MISTAKES = "typed_mistakes.py"
ANYIO_PROGRAM = "typed_anyio.py"
MP_PROGRAM = "typed_multiprocessing.py"
PYRIGHT_TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "tools", "basedpyright.py")

def _mypy_command():
    """How to run mypy for this Python: with this interpreter when mypy runs
    on it, else with a newer one that has it, checking for this version
    (Debian's mypy is compiled for its default Python only: on 3.13 it
    does not import).  None if there is none."""
    import shutil

    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [sys.executable] + list(filter(None, (shutil.which(f"python3.{minor}")
                                                       for minor in (14, 15))))
    for python in candidates:
        probe = subprocess.run([python, "-c", "import mypy.build"], capture_output=True, timeout=120)
        if probe.returncode == 0:
            if python == sys.executable:
                return [python, "-m", "mypy"]
            return [python, "-m", "mypy", "--python-version", version,
                    "--python-executable", sys.executable]
    return None


MYPY = _mypy_command() if importlib.util.find_spec("mypy") is not None else None
HAS_MYPY = MYPY is not None
HAS_ANYIO = importlib.util.find_spec("anyio") is not None
needs_mypy = pytest.mark.skipif(not HAS_MYPY, reason="mypy is not installed (or runs on no Python here)")
needs_anyio = pytest.mark.skipif(not HAS_ANYIO, reason="anyio is not installed")

ERROR_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<message>.*?)\s+\[(?P<code>[\w-]+)\]$")
EXPECTED = re.compile(r"#\s*E:\s*(?P<codes>[\w -]+?)\s*(?:#|$)")


def _env():
    """This interpreter's environment, with the interpool being tested
    importable first (mypy finds packages on the target Python's sys.path)."""
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(interpool.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    env.pop("MYPYPATH", None)
    return env


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory):
    """{case file name: [(line, code, message)]} from one `mypy --strict` run."""
    files = [PROGRAM, MP_PROGRAM, MISTAKES] + ([ANYIO_PROGRAM] if HAS_ANYIO else [])
    cache = tmp_path_factory.mktemp("mypy-cache")
    proc = subprocess.run(
        [*MYPY, "--strict", "--show-error-codes", "--no-error-summary",
         "--no-pretty", "--no-color-output", "--cache-dir", str(cache), *files],
        cwd=CASES, env=_env(), capture_output=True, text=True, timeout=600,
    )
    if proc.returncode not in (0, 1) or proc.stderr.strip():
        pytest.fail(f"mypy failed to run (status {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    errors = {name: [] for name in files}
    for line in proc.stdout.splitlines():
        match = ERROR_LINE.match(line)
        if match is None:
            continue  # notes
        name = os.path.basename(match["file"])
        assert name in errors, f"mypy reported an error outside the case files: {line}"
        errors[name].append((int(match["line"]), match["code"], match["message"]))
    return errors


@needs_mypy
def test_typed_program_passes_mypy_strict(mypy_errors):
    assert mypy_errors[PROGRAM] == []


@needs_mypy
def test_typed_multiprocessing_program_passes_mypy_strict(mypy_errors):
    assert mypy_errors[MP_PROGRAM] == []


@needs_mypy
@needs_anyio
def test_typed_anyio_program_passes_mypy_strict(mypy_errors):
    assert mypy_errors[ANYIO_PROGRAM] == []


@needs_mypy
def test_mistakes_are_rejected(mypy_errors):
    expected = set()
    with open(os.path.join(CASES, MISTAKES)) as f:
        for number, text in enumerate(f, 1):
            match = EXPECTED.search(text)
            if match:
                expected |= {(number, code) for code in match["codes"].split()}
    assert len(expected) >= 20
    reported = {(line, code) for line, code, _ in mypy_errors[MISTAKES]}
    assert reported == expected, mypy_errors[MISTAKES]


@needs_mypy
def test_mistakes_name_the_typo(mypy_errors):
    messages = [message for _, _, message in mypy_errors[MISTAKES]]
    assert any('"Pooll"; maybe "Pool"?' in m for m in messages)
    assert any('"Runnr"; maybe "Runner"?' in m for m in messages)


# ------------------------------------------------------------ basedpyright


@pytest.fixture(scope="module")
def pyright():
    """Run basedpyright (strict: tests/typing_cases/pyrightconfig.json) in
    the cases directory; returns (exit status, its JSON report)."""
    import json

    install = subprocess.run([sys.executable, PYRIGHT_TOOL, "--install"],
                             capture_output=True, text=True, timeout=900)
    if install.returncode != 0:
        reason = f"basedpyright could not be installed from PyPI:\n{install.stderr[-2000:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)   # CI has PyPI: this check must run there
        pytest.skip(reason)

    def run(*args):
        proc = subprocess.run([sys.executable, PYRIGHT_TOOL, "--outputjson", *args],
                              cwd=CASES, env=_env(), capture_output=True, text=True, timeout=600)
        try:
            return proc.returncode, json.loads(proc.stdout)
        except ValueError:
            pytest.fail(f"basedpyright failed to run (status {proc.returncode}):\n"
                        f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")

    return run


def _pyright_errors(report):
    """{file name: [(line, rule, message)]} of the errors in a report."""
    errors = {}
    for diag in report["generalDiagnostics"]:
        if diag["severity"] == "error":
            errors.setdefault(os.path.basename(diag["file"]), []).append(
                (diag["range"]["start"]["line"] + 1, diag.get("rule"), diag["message"]))
    return errors


@pytest.fixture(scope="module")
def pyright_errors(pyright):
    files = [PROGRAM, MP_PROGRAM, MISTAKES] + ([ANYIO_PROGRAM] if HAS_ANYIO else [])
    _, report = pyright(*files)
    assert report["summary"]["filesAnalyzed"] == len(files), report["summary"]
    return _pyright_errors(report)


def test_typed_programs_pass_basedpyright_strict(pyright_errors):
    for name in (PROGRAM, MP_PROGRAM) + ((ANYIO_PROGRAM,) if HAS_ANYIO else ()):
        assert pyright_errors.get(name, []) == [], name


def test_mistakes_are_rejected_by_basedpyright(pyright_errors):
    """An error on every line marked `# E:` (pyright names its rules apart
    from mypy's codes), and on no other line."""
    expected = set()
    with open(os.path.join(CASES, MISTAKES)) as f:
        for number, text in enumerate(f, 1):
            if EXPECTED.search(text):
                expected.add(number)
    reported = {line for line, _, _ in pyright_errors.get(MISTAKES, [])}
    assert reported == expected, pyright_errors.get(MISTAKES)


# Public names whose type basedpyright cannot know, each with the reason.
UNKNOWN_PUBLIC_TYPES = {
    "interpool.joblib.InterpoolBackend":
        "its base classes are joblib's, and joblib ships no types",
}


def test_public_api_is_complete_for_type_checkers(pyright):
    """``--verifytypes``: every name interpool exports has a known type
    (what pyright-based editors show users)."""
    _, report = pyright("--verifytypes", "interpool", "--ignoreexternal")
    problems = [
        f"{symbol['name']}: {[d['message'] for d in symbol['diagnostics']]}"
        for symbol in report["typeCompleteness"]["symbols"]
        if any(d["severity"] == "error" for d in symbol["diagnostics"])
        and symbol["name"] not in UNKNOWN_PUBLIC_TYPES
    ]
    assert problems == [], "\n".join(problems)
    modules = {m["name"] for m in report["typeCompleteness"]["modules"]}
    assert {"interpool", "interpool.multiprocessing"} <= modules


def _run_case(name):
    proc = subprocess.run(
        [sys.executable, name], cwd=CASES, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_typed_program_runs():
    assert "typed program ok" in _run_case(PROGRAM)


def test_typed_multiprocessing_program_runs():
    assert "typed multiprocessing program ok" in _run_case(MP_PROGRAM)


@needs_anyio
def test_typed_anyio_program_runs():
    assert "typed anyio program ok" in _run_case(ANYIO_PROGRAM)


# ------------------------------------------------------------ the package's names


def test_every_public_name_resolves():
    for name in interpool.__all__:
        assert getattr(interpool, name) is not None
    assert set(interpool.__all__) == set(interpool._EXPORTS)
    assert set(interpool.__all__) <= set(dir(interpool))
    namespace = {}
    exec("from interpool import *", namespace)
    assert set(interpool.__all__) <= set(namespace)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="Pooll"):
        interpool.Pooll  # noqa: B018
    with pytest.raises(ImportError):
        from interpool import Pooll  # noqa: F401


def test_queue_is_generic_at_run_time():
    q = interpool.Queue[int](maxsize=2)
    assert type(q) is interpool.Queue
    q.put(1)
    assert q.get_nowait() == 1


HEAVY = ["asyncio", "concurrent.futures", "inspect", "typing"]


def test_worker_start_up_imports_nothing_heavy():
    """Workers import the package (through interpool._core): its lazy names
    keep typing, asyncio and concurrent.futures out of them."""
    with interpool.Pool(1) as pool:
        assert pool.submit(ht.loaded, HEAVY).result(timeout=60) == []
        # A Queue reaching a worker (interpool.Queue, from _queue) adds none either.
        assert pool.submit(ht.loaded_with_queue, interpool.Queue(), HEAVY).result(timeout=60) == []
