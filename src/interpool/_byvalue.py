"""Functions and classes that travel by value (cloudpickle's semantics).

A worker never runs the caller's script.  What it cannot import by module
and name travels as its definition: the functions and classes of
``__main__`` (a script, ``python -c``, stdin, exec'd code, a notebook),
lambdas, nested functions, local classes.  Everything else in a pickle
travels as pickle sends it: importable functions and classes by
reference, modules by name.

Used on both sides: the caller pickles, a worker rebuilds, and pickles
again for its results or its own pools (a class that comes back is the
caller's own class).

- A *definition* is a self-contained pickle of one function, class or
  lru_cache wrapper: every other by-value function or class it reaches is
  inlined (pickle's memo resolves cycles: mutual recursion, a class that
  names itself), then the globals their code reads: modules by name, other
  values by value, as they are when the definition is made.  It is made
  once per interpreter, and again when the caller rebinds one of those
  names (or defines one that was missing).
- A *uid* names a definition in every interpreter of the process: the
  definition is stored once in raw memory every interpreter can read
  (interpool._core.put_definition), and a message carries the uid only; a
  receiver loads a definition once (each pool registers a function once,
  each worker loads it once), and a class keeps its identity across calls
  and round trips.  A global a program rebinds at every call (in a loop)
  stops making new definitions after a few: from then on the rebound
  globals travel with each call.
- A *namespace* is the globals dict by-value functions share in a receiver,
  one per globals dict of the sender (``__main__``'s, a notebook's), so
  functions defined together see each other as in the script, and what the
  worker changes (an initializer filling a global, a cache) stays there for
  its later tasks.  A global is installed when its definition loads, unless
  the namespace already holds a value at least as recent: a worker keeps
  its own changes until the caller rebinds the name.  A sender never writes
  into its own namespaces.

``dumps(obj)`` turns any object (a callable, a call's arguments) into its
travelling form to another interpreter of this process (the codec uses it
for every value it pickles); ``dumps(obj, portable=True)`` carries the
definitions themselves, for another process that can import interpool.
``loads`` (pickle.loads) rebuilds either.
"""

import functools
import io
import itertools
import operator
import os
import pickle
import sys
import time
import weakref

from . import _core

_FunctionType = type(lambda: None)
_CodeType = type((lambda: None).__code__)
_ModuleType = type(sys)
_CellType = type((lambda x: lambda: x)(0).__closure__[0])
_MappingProxyType = type(type.__dict__)
_LruWrapperType = functools._lru_cache_wrapper
_MISSING = object()   # never pickled
_is = operator.is_

__all__ = ["dumps", "loads", "by_reference", "template", "callable_of", "Stateful"]


# ------------------------------------------------------------ registries (per interpreter)

_by_uid = weakref.WeakValueDictionary()    # uid -> class or lru_cache wrapper (identity kept)
_uid_of = weakref.WeakKeyDictionary()      # class or lru_cache wrapper -> uid
_loaded: dict = {}                         # uid -> function of a definition loaded here
_LOADED_MAX = 4096                         # (bounded: functions made at run time)
_namespaces: dict = {}                     # namespace uid -> globals dict (kept alive)
_namespace_uid: dict = {}                  # id(globals dict) -> namespace uid
_home: set = set()                         # ids of this interpreter's own globals dicts
_installed: dict = {}                      # (id(namespace), name) -> stamp of its value
_stamps: dict = {}                         # sender: (id(globals), name) -> (value, stamp)
# Sender: changes whenever a global is stamped with a new value, so that a
# definition re-checks its stamps only then (threads stamping at once may
# store their numbers out of order: any change of it is what counts).
_stamp_epochs = itertools.count(1)
_stamp_epoch = 0
_pending = weakref.WeakSet()               # classes, lru wrappers made here, state to set


def _new_uid() -> bytes:
    return os.urandom(12)


def _register(uid: bytes, obj) -> None:
    _by_uid[uid] = obj
    _uid_of[obj] = uid


def _object_uid(obj) -> bytes:
    """The uid of a class or an lru_cache wrapper (functions: _Export.uid)."""
    uid = _uid_of.get(obj)
    if uid is None:
        uid = _new_uid()
        _register(uid, obj)
    return uid


def _namespace_uid_of(g: dict) -> bytes:
    uid = _namespace_uid.get(id(g))
    if uid is None:   # one of our own globals dicts
        uid = _new_uid()
        _namespaces[uid] = g
        _namespace_uid[id(g)] = uid
        _home.add(id(g))
    return uid


# ------------------------------------------------------------ what travels by reference


# Classes whose __module__ names no importable module: CPython 3.13's
# _interpreters exceptions say "interpreters".
MODULE_ALIASES = {"interpreters": "_interpreters"}


def lookup(module_name: str, qualname: str):
    """The object a worker finds as module.qualname (from sys.modules only:
    nothing is imported here)."""
    obj = sys.modules.get(module_name) or sys.modules.get(MODULE_ALIASES.get(module_name, ""))
    if obj is None:
        return None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def main_is_a_module() -> bool:
    """``python -m pkg.mod``: workers load pkg.mod as ``__mp_main__``, so
    what ``__main__`` defines at module level travels by reference."""
    main = sys.modules.get("__main__")
    try:
        name = main.__spec__.name
    except AttributeError:
        return False
    return isinstance(name, str) and name not in ("", "__main__")


def by_reference(obj) -> bool:
    """Whether `obj` is left to pickle's by-reference path (module and
    qualified name): not what ``__main__`` defines (unless run with
    ``-m``), nor a function its module does not hold under its name.  A
    class goes by value only if Python code defined it where a worker
    cannot import it (``__main__``, a function, exec'd code); one that its
    imported module does not hold (a type C code made at run time, a class
    replaced in its module) is left to pickle, which says it cannot."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return False
    if module == "__main__" and not main_is_a_module():
        return False
    if lookup(module, qualname) is obj:
        return True
    return isinstance(obj, type) and "<locals>" not in qualname and (
        module in sys.modules or module in MODULE_ALIASES)


def _module_namespace(fn) -> bool:
    """fn's globals are those of an importable module (a worker imports it
    by name), not the caller's script's or an exec'd namespace (they travel
    by value)."""
    module = fn.__module__
    return (isinstance(module, str) and module not in ("__main__", "__mp_main__")
            and getattr(sys.modules.get(module), "__dict__", None) is fn.__globals__)


# ------------------------------------------------------------ code


def _nested_code(code):
    stack = [code]
    while stack:
        co = stack.pop()
        yield co
        stack.extend(c for c in co.co_consts if type(c) is _CodeType)


_GLOBAL_OPS = frozenset((
    "LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME", "STORE_NAME",
    "DELETE_NAME", "LOAD_FROM_DICT_OR_GLOBALS",
))


def global_names(code) -> list:
    """Names the code (and code nested in it) reads or writes as globals,
    in a stable order."""
    import dis

    names = {}
    for co in _nested_code(code):
        for ins in dis.get_instructions(co):
            if ins.opname in _GLOBAL_OPS:
                names[ins.argval] = None
    return list(names)


def assigned_free_vars(code) -> set:
    """Captured variables the code (or code nested in it) assigns to
    (``nonlocal x; x = ...``): a copy sent to a worker cannot write back."""
    import dis

    free = set(code.co_freevars)
    return {
        ins.argval
        for co in _nested_code(code)
        for ins in dis.get_instructions(co)
        if ins.opname in ("STORE_DEREF", "DELETE_DEREF")
        and ins.argval in free and ins.argval in co.co_freevars
    }


def _submodules(code, modules) -> list:
    """Submodules the code reaches as attributes of modules it reads
    (``import xml.etree.ElementTree`` then ``xml.etree.ElementTree.parse``):
    importing the top module alone may not import them in a worker."""
    names = set()
    for co in _nested_code(code):
        names.update(co.co_names)
    found = []
    for module in modules:
        prefix = module.__name__ + "."
        for name in list(sys.modules):
            if name.startswith(prefix) and all(p in names for p in name[len(prefix):].split(".")):
                found.append(name)
    return found


# ------------------------------------------------------------ exports (sender side)


class _Export:
    """A definition made here: its uid, its pickle, and the globals it read
    with the value each had then, checked at each call (`fresh`)."""

    __slots__ = ("uid", "definition", "watch", "checks", "absent", "code", "globals",
                 "assigns_free", "what", "travel", "redefined", "volatile", "epoch",
                 "sent", "__weakref__")

    def __init__(self, uid: bytes, code=None, g=None, what: str = "") -> None:
        self.uid = uid
        self.definition = None
        self.watch = ()       # (globals dict, name, value then or _MISSING)
        self.checks = ()      # (globals dict, itemgetter of names, values then, several)
        self.absent = ()      # (globals dict, name): not defined then
        self.redefined = 0    # how many definitions of this function came before
        self.volatile = False # rebound too often: rebound globals travel with each call
        self.code = code
        self.globals = g
        self.assigns_free = None
        self.what = what
        self.travel = None    # interpool._callables: how a call without state travels
        self.epoch = -1       # _stamp_epoch when the stamps were last found as sent
        self.sent = ()        # per watched global: the _stamps entry it was sent with

    def set_watch(self, watch, sent: dict, epoch: int) -> None:
        """Watch the (globals dict, name, value then) the definition read;
        `sent`: the _stamps entry each was sent with, by (id(globals), name),
        as of `epoch`."""
        self.watch = tuple(watch)
        self.sent = tuple(sent.get((id(g), name)) for g, name, _ in self.watch)
        self.epoch = epoch
        groups: dict = {}
        absent = []
        for g, name, value in watch:
            if value is _MISSING:
                absent.append((g, name))
            else:
                groups.setdefault(id(g), (g, [], []))
                groups[id(g)][1].append(name)
                groups[id(g)][2].append(value)
        # One C call per globals dict fetches all its names at once.
        self.checks = tuple((g, operator.itemgetter(*names), tuple(values) if len(values) > 1
                             else values[0], len(values) > 1)
                            for g, names, values in groups.values())
        self.absent = tuple(absent)

    def fresh(self) -> bool:
        """No global it read was rebound (nor a missing one defined) since,
        nor sent with another value meanwhile (by another definition or a
        call's changes: workers may hold that value, though the caller's is
        back to the one this definition sent)."""
        for g, get, then, many in self.checks:
            try:
                now = get(g)
            except KeyError:
                return False
            if not (all(map(_is, now, then)) if many else now is then):
                return False
        for g, name in self.absent:
            if name in g:
                return False
        epoch = _stamp_epoch   # (read once: a stamp made during the check moves it again)
        if self.epoch != epoch:   # something was stamped anew since: one of ours?
            for (g, name, then), sent in zip(self.watch, self.sent):
                if then is not _MISSING and _stamps.get((id(g), name)) is not sent:
                    return False
            self.epoch = epoch
        return True

    def changes(self):
        """The globals rebound since the definition was made, or sent since
        with a value other than the caller's now, as they travel with a
        call: ((namespace uid, name, stamp, value), ...), or None."""
        out = []
        for (g, name, then), sent in zip(self.watch, self.sent):
            now = g.get(name, _MISSING)
            if now is _MISSING:
                continue
            if now is not then or _stamps.get((id(g), name)) is not sent:
                out.append((_namespace_uid_of(g), name, _stamp(g, name, now), now))
        return tuple(out) or None

    def call_state(self, fn):
        """What travels with one call of `fn` (of this definition): None, or
        (rebound globals, defaults, kwdefaults, captured values)."""
        changes = self.changes() if self.volatile else None
        closure = fn.__closure__
        if closure is None and fn.__defaults__ is None and fn.__kwdefaults__ is None:
            return None if changes is None else (changes, None, None, None)
        cells = None
        if closure is not None:
            cells = []
            for name, cell in zip(fn.__code__.co_freevars, closure):
                try:
                    cells.append(cell.cell_contents)
                except ValueError:
                    raise TypeError(
                        f"cannot send the closure {self.what} to a worker interpreter: its "
                        f"captured variable {name!r} has no value yet"
                    ) from None
            cells = tuple(cells)
        return (changes, fn.__defaults__, fn.__kwdefaults__, cells)


# Function definitions by (code, globals): a lambda made anew at each call,
# or closures of one factory, share one.  Bounded: a program that makes
# code at run time without end does not grow it forever.
_templates: dict = {}
_TEMPLATES_MAX = 4096
# Classes and lru_cache wrappers exported from here, and those rebuilt here
# (their instances go straight to the by-value pickler): kept alive, as
# their classes would be anyway.
_object_exports: dict = {}
_by_value_types: set = set()
# Whether a class pickle meets is left to its by-reference path; the
# functions that are (module-level ones, found by name: they live as long as
# their modules).
_class_by_reference: dict = {}
_functions_by_reference: set = set()
# The last functions without defaults or captured values sent by value,
# for the per-call fast path (others, and a lambda made anew at each call,
# are found by their code).
_recent: dict = {}
_RECENT_MAX = 256
# After this many definitions of one function (a global rebound at every
# call, in a loop), rebound globals travel with each call instead: the
# definitions stored for the process and a pool's registrations stay few.
_REDEFINITIONS_MAX = 8


def cached_template(fn):
    """fn's export if this interpreter defined it already and the globals it
    read were not rebound since (the fast path), else None."""
    export = _recent.get(fn)
    if export is not None and export.code is fn.__code__ and (
            not (export.checks or export.absent) or export.fresh()):
        return export
    export = _templates.get((id(fn.__code__), id(fn.__globals__)))
    if export is None or export.code is not fn.__code__ or export.globals is not fn.__globals__ \
            or export.definition is None or not export.fresh():
        return None
    if not _has_instance(fn):   # (a closure would keep what it captures alive)
        if len(_recent) >= _RECENT_MAX:
            _recent.clear()
        _recent[fn] = export
    return export


def _new_template(fn, uid: bytes) -> _Export:
    key = (id(fn.__code__), id(fn.__globals__))
    if key not in _templates and len(_templates) >= _TEMPLATES_MAX:
        del _templates[next(iter(_templates))]
    export = _templates[key] = _Export(uid, fn.__code__, fn.__globals__, repr(fn.__qualname__))
    return export


def template(fn) -> _Export:
    """The export of fn's definition (TypeError if it cannot travel).  A
    global rebound since it was made (or a missing one defined) makes a new
    definition, under a new uid: each pool registers it once."""
    export = _templates.get((id(fn.__code__), id(fn.__globals__)))
    if export is None or export.code is not fn.__code__ or export.globals is not fn.__globals__:
        export = _new_template(fn, _new_uid())
    elif export.definition is not None and not export.volatile and not export.fresh():
        if export.redefined >= _REDEFINITIONS_MAX:
            export.volatile = True
        else:
            redefined = export.redefined + 1
            export = _new_template(fn, _new_uid())
            export.redefined = redefined
        _recent.pop(fn, None)
    if export.definition is None:
        _define(export, fn)
        if export.uid not in _loaded:
            # A result that brings it back is this very function.
            _keep_loaded(export.uid, fn)
    return export


def _object_export(obj) -> _Export:
    """The export of a class or an lru_cache wrapper: defined once (it
    keeps its identity), as it is the first time it travels."""
    export = _object_exports.get(obj)
    if export is None:
        export = _Export(_object_uid(obj))
        _define(export, obj)
        _object_exports[obj] = export
        if isinstance(obj, type):
            _by_value_types.add(obj)
    return export


def _stamp(g: dict, name: str, value) -> int:
    """When the caller's value of g[name] appeared (as first seen here): a
    worker installs a value only if it is newer than the one it holds."""
    return _stamp_entry(g, name, value)[1]


def _stamp_entry(g: dict, name: str, value) -> tuple:
    """The (value, stamp) entry g[name] is sent with (a new one when the
    value changed since it was last sent)."""
    global _stamp_epoch
    key = (id(g), name)
    seen = _stamps.get(key)
    if seen is None or seen[0] is not value:
        seen = _stamps[key] = (value, time.monotonic_ns())
        _stamp_epoch = next(_stamp_epochs)
    return seen


def _define(export: _Export, root) -> None:
    buf = io.BytesIO()
    p = _DefinitionPickler(buf, root)
    epoch = _stamp_epoch   # (before stamping: another thread's stamp meanwhile moves it)
    sent: dict = {}
    try:
        p.dump(root)
        # Then the globals to install, per namespace, with their stamps
        # (pickle's memo makes them the objects the first part refers to).
        groups = []
        for g, values in p.globals.values():
            stamped = {}
            for n, v in values.items():
                entry = sent[(id(g), n)] = _stamp_entry(g, n, v)
                stamped[n] = (entry[1], v)
            groups.append((_namespace_uid_of(g), stamped))
        p.dump(tuple(groups))
    except Exception as exc:
        raise _cannot_travel(root, exc) from exc
    export.set_watch(p.watch, sent, epoch)
    export.definition = buf.getvalue()
    _core.put_definition(export.uid, export.definition)


def _describe(obj) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)
    kind = "class" if isinstance(obj, type) else "function"
    return f"the {kind} {name!r}"


def _cannot_travel(root, exc: BaseException) -> TypeError:
    """A TypeError naming the function or class and, where found, the global
    that cannot travel (a lock, a socket, an open file, a generator...)."""
    culprit = _find_culprit(root)
    detail = f"{type(exc).__name__}: {exc}"
    notes = getattr(exc, "__notes__", None)
    if notes:
        detail += " (" + "; ".join(notes) + ")"
    if culprit is not None:
        name, value = culprit
        return TypeError(
            f"cannot send {_describe(root)} to a worker interpreter: its global {name!r} "
            f"holds a {type(value).__module__}.{type(value).__qualname__} object, which cannot "
            f"travel ({detail}). Pass it as an argument that can travel, or create it "
            "inside the function.")
    return TypeError(f"cannot send {_describe(root)} to a worker interpreter: pickling its "
                     f"definition failed ({detail}).")


def _find_culprit(root, seen=None):
    """(name, value) of the first global of root (or of a by-value function
    or class it reaches) that cannot be pickled, or None."""
    seen = set() if seen is None else seen
    if id(root) in seen:
        return None
    seen.add(id(root))
    if isinstance(root, type):
        state = _class_state(root)
        funcs = [v for v in state.values() if type(v) is _FunctionType]
        for name, value in state.items():
            if type(value) is not _FunctionType and not _picklable(value):
                return f"{root.__qualname__}.{name}", value
    else:
        funcs = [getattr(root, "__wrapped__", root)]
    for fn in funcs:
        if type(fn) is not _FunctionType:
            continue
        g = fn.__globals__
        for name in global_names(fn.__code__):
            value = g.get(name, _MISSING)
            if value is _MISSING:
                continue
            if (type(value) is _FunctionType or isinstance(value, type)) and not by_reference(value):
                found = _find_culprit(value, seen)
                if found is not None:
                    return found
            elif not _picklable(value):
                return name, value
    return None


def _picklable(value) -> bool:
    try:
        dumps(value)
    except Exception:
        return False
    return True


# ------------------------------------------------------------ pickling


def _reduce_module(module):
    name = module.__name__
    if sys.modules.get(name) is not module or name in ("__main__", "__mp_main__"):
        raise TypeError(f"the module {name!r} cannot travel: a worker cannot import it by name")
    return _import_module, (name,)


def _reduce_special(obj, t):
    """Modules (by name), code objects, objects pickle cannot take by itself
    that a class body holds, and dataclasses' sentinels (whose identity its
    code checks)."""
    if t is _ModuleType:
        return _reduce_module(obj)
    if t is _CodeType:
        return _unmarshal, (_marshal(obj),)
    if t is staticmethod or t is classmethod:
        return t, (obj.__func__,)
    if t is property:
        return property, (obj.fget, obj.fset, obj.fdel, obj.__doc__)
    if t is _MappingProxyType:   # e.g. a dataclass field's metadata
        return _mapping_proxy, (dict(obj),)
    if t.__module__ == "dataclasses":
        dataclasses = sys.modules["dataclasses"]
        for name in ("MISSING", "KW_ONLY", "_HAS_DEFAULT_FACTORY", "_FIELD", "_FIELD_CLASSVAR",
                     "_FIELD_INITVAR"):
            if getattr(dataclasses, name, None) is obj:
                return _dataclass_sentinel, (name,)
    elif t.__qualname__ in ("TypeVar", "ParamSpec", "TypeVarTuple") and not by_reference(obj):
        if t.__qualname__ == "TypeVar":
            kwargs = {"bound": obj.__bound__, "covariant": obj.__covariant__,
                      "contravariant": obj.__contravariant__}
            return _make_typevar, (t, obj.__name__, obj.__constraints__, kwargs)
        return _make_typevar, (t, obj.__name__, (), {})
    return NotImplemented


# Types _reduce_special handles by themselves, and the modules of the others.
_SPECIAL_TYPES = frozenset((_ModuleType, _CodeType, staticmethod, classmethod, property,
                            _MappingProxyType))
_SPECIAL_MODULES = frozenset(("dataclasses", "typing"))


def _class_left_to_pickle(cls) -> bool:
    """by_reference for a class, remembered (a class keeps its name)."""
    found = _class_by_reference.get(cls)
    if found is None:
        found = _class_by_reference[cls] = by_reference(cls)
    return found


class MessagePickler(pickle.Pickler):
    """A value as it crosses once (an argument, a result): a by-value
    function, class or lru_cache wrapper goes as its uid (loaded once per
    receiver), and its definition too if `portable`."""

    portable = False

    def reducer_override(self, obj):
        t = type(obj)
        if t is _FunctionType:
            if obj in _functions_by_reference:
                return NotImplemented
            if by_reference(obj):
                _functions_by_reference.add(obj)
                return NotImplemented
            return _function_message(obj, self.portable)
        if isinstance(obj, type) or t is _LruWrapperType:
            export = _object_exports.get(obj)
            if export is None:
                if (_class_left_to_pickle(obj) if t is not _LruWrapperType
                        else by_reference(obj)):
                    return NotImplemented
                export = _object_export(obj)
            return _object, ((export.uid, export.definition) if self.portable else (export.uid,))
        if t in _SPECIAL_TYPES or t.__module__ in _SPECIAL_MODULES:
            return _reduce_special(obj, t)
        return NotImplemented


class _DefinitionPickler(pickle.Pickler):
    """A definition: the root and every by-value function and class it
    reaches, inline as skeleton + state (pickle's memo resolves cycles);
    records the globals they read."""

    def __init__(self, file, root) -> None:
        super().__init__(file, 5)
        self.root = root
        self.watch: list = []      # (globals dict, name, value or _MISSING)
        self.watched: set = set()
        self.globals: dict = {}    # id(globals dict) -> (globals dict, {name: value})

    def reducer_override(self, obj):
        t = type(obj)
        if t is _FunctionType:
            return NotImplemented if by_reference(obj) else self._function(obj)
        if isinstance(obj, type):
            return NotImplemented if by_reference(obj) else self._class(obj)
        if t is _LruWrapperType:
            if by_reference(obj):
                return NotImplemented
            info = obj.cache_parameters()
            return (_make_lru, (_object_uid(obj), info["maxsize"], info["typed"]),
                    obj.__wrapped__, None, None, _set_lru)
        if t in _SPECIAL_TYPES or t.__module__ in _SPECIAL_MODULES:
            return _reduce_special(obj, t)
        return NotImplemented

    def _function(self, fn):
        code = fn.__code__
        g = fn.__globals__
        names = global_names(code)
        state = {"qualname": fn.__qualname__, "module": fn.__module__}
        if fn.__doc__ is not None:
            state["doc"] = fn.__doc__
        if fn.__dict__:
            state["dict"] = fn.__dict__
        if _module_namespace(fn):
            # A lambda or closure of an importable module: its globals are
            # that module's, imported by name (not at all if it reads none).
            builtins = _builtins()
            if any(n in g or not hasattr(builtins, n) for n in names):
                ns = ("module", fn.__module__)
            else:
                ns = ("pure", fn.__module__, g.get("__package__"))
        else:
            ns = ("value", _namespace_uid_of(g), g.get("__name__"))
            values = self._read(g, names)
            if values:
                # Pickled here, so that what they reach is inlined in this
                # first part; installed from the second, merged per namespace.
                state["globals"] = values
                modules = [v for v in values.values() if type(v) is _ModuleType]
                if modules:
                    state["submodules"] = _submodules(code, modules)
        if fn is not self.root and _has_instance(fn):
            state["instance"] = _instance_state(fn)
        return (_make_function, (code, ns, fn.__name__), state, None, None,
                _set_function_state)

    def _read(self, g: dict, names) -> dict:
        """The values of the globals `names` of g; each is watched."""
        builtins = _builtins()
        values = {}
        merged = self.globals.setdefault(id(g), (g, {}))[1]
        for name in names:
            value = g.get(name, _MISSING)
            if value is _MISSING and hasattr(builtins, name):
                continue   # a builtin (the caller is not expected to shadow it later)
            if (id(g), name) not in self.watched:
                self.watched.add((id(g), name))
                self.watch.append((g, name, value))
            if value is not _MISSING:
                values[name] = merged[name] = value
        return values

    def _class(self, cls):
        uid = _object_uid(cls)
        d = cls.__dict__
        enum = sys.modules.get("enum")
        state = _class_state(cls)
        if enum is not None and isinstance(cls, enum.EnumType) and cls.__members__:
            members = {m.name: m.value for m in cls}
            for name in cls.__members__:
                state.pop(name, None)
            for name in ("_generate_next_value_", "_member_names_", "_member_map_",
                         "_member_type_", "_value2member_map_", "_unhashable_values_",
                         "_value_repr_", "_new_member_", "_use_args_", "_hashable_values_",
                         "__new__", "_add_alias_", "_add_value_alias_"):
                state.pop(name, None)
            return (_make_enum, (uid, type(cls), cls.__name__, cls.__bases__, members,
                                 cls.__module__, cls.__qualname__),
                    state, None, None, _set_class_state)
        kwargs = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
        if "__slots__" in d:
            kwargs["__slots__"] = d["__slots__"]
        return (_make_class, (uid, type(cls), cls.__name__, cls.__bases__, kwargs), state,
                None, None, _set_class_state)


def _builtins():
    import builtins

    return builtins


def _marshal(code) -> bytes:
    import marshal

    return marshal.dumps(code)


def _has_instance(fn) -> bool:
    return fn.__closure__ is not None or fn.__defaults__ is not None or fn.__kwdefaults__ is not None


class _EmptyCell:
    """Stands for a captured variable with no value yet."""


def _instance_state(fn) -> tuple:
    cells = None
    if fn.__closure__ is not None:
        cells = []
        for cell in fn.__closure__:
            try:
                cells.append(cell.cell_contents)
            except ValueError:
                cells.append(_EmptyCell)
        cells = tuple(cells)
    return (fn.__defaults__, fn.__kwdefaults__, cells)


# Rebuilt by the class statement machinery, or not picklable (3.14's
# annotation functions are evaluated lazily where they are needed).
_SKIPPED_CLASS_ATTRS = frozenset(("__dict__", "__weakref__", "__annotate_func__", "__annotate__",
                                  "__classdictcell__", "__annotations_cache__"))


def _class_state(cls) -> dict:
    d = cls.__dict__
    slots = d.get("__slots__", ())
    if isinstance(slots, str):
        slots = (slots,)
    state = {}
    for name, value in d.items():
        if name in _SKIPPED_CLASS_ATTRS or name in slots:
            continue
        state[name] = value
    if "_abc_impl" in state:
        import abc

        del state["_abc_impl"]
        registered = [ref() for ref in abc._get_dump(cls)[0]]
        state["_abc_registered"] = [c for c in registered if c is not None]
    return state


def _function_message(fn, portable: bool):
    export = template(fn)
    args = (export.uid, export.definition if portable else None,
            export.changes() if export.volatile else None)
    if not _has_instance(fn):
        return _function, args
    return _function_copy, args, _instance_state(fn), None, None, _set_instance


def dumps(obj, protocol: int = 5, *, portable: bool = False) -> bytes:
    """Pickle obj; what a worker cannot import by name travels by value.
    `portable`: the definitions travel in the pickle itself, for another
    process (else they are named by uid, for this process's interpreters).

    Plain pickle first (C speed, and nothing changes for values that name
    no ``__main__`` object); by value when it fails (a lambda, a local
    class, a function a worker rebuilt) or names ``__main__``, and at once
    for an instance of a class known to travel by value.
    """
    if type(obj) not in _by_value_types:
        try:
            data = pickle.dumps(obj, protocol)
        except Exception:
            pass
        else:
            if b"__main__" not in data:
                return data
    buf = io.BytesIO()
    p = MessagePickler(buf, protocol)
    p.portable = portable
    p.dump(obj)
    return buf.getvalue()


loads = pickle.loads


# ------------------------------------------------------------ rebuilding (receiver side)


def _unmarshal(data: bytes):
    import marshal

    return marshal.loads(data)


def _import_module(name: str):
    import importlib

    return importlib.import_module(name)


def _dataclass_sentinel(name: str):
    import dataclasses

    return getattr(dataclasses, name)


def _mapping_proxy(d: dict):
    return _MappingProxyType(d)


def _make_typevar(kind, name, constraints, kwargs):
    return kind(name, *constraints, **kwargs)


def _namespace(spec) -> dict:
    kind = spec[0]
    if kind == "value":
        g = _namespaces.get(spec[1])
        if g is None:
            g = {"__builtins__": _builtins(), "__name__": spec[2]}
            _namespaces[spec[1]] = g
            _namespace_uid[id(g)] = spec[1]
        return g
    if kind == "module":
        return _import_module(spec[1]).__dict__
    # Reads no globals: no need to import (or even be able to import) its
    # module; enough for relative imports inside it.
    return {"__builtins__": _builtins(), "__name__": spec[1], "__package__": spec[2],
            "__spec__": None}


def _make_function(code, ns, name):
    closure = tuple(_CellType() for _ in code.co_freevars) if code.co_freevars else None
    return _FunctionType(code, _namespace(ns), name, None, closure)


def _set_function_state(fn, state) -> None:
    for name in state.get("submodules", ()):
        _import_module(name)
    fn.__qualname__ = state["qualname"]
    fn.__module__ = state["module"]
    if "doc" in state:
        fn.__doc__ = state["doc"]
    if "dict" in state:
        fn.__dict__.update(state["dict"])
    if "instance" in state:
        _set_instance(fn, state["instance"])


def _set_instance(fn, instance) -> None:
    defaults, kwdefaults, cells = instance
    fn.__defaults__ = defaults
    fn.__kwdefaults__ = kwdefaults
    if cells is not None:
        for cell, value in zip(fn.__closure__, cells):
            if value is not _EmptyCell:
                cell.cell_contents = value


def _copy(template_fn, defaults, kwdefaults, cells):
    """A new function from a loaded one, with one call's (or value's) own
    defaults and captured values."""
    closure = tuple(_CellType() if v is _EmptyCell else _CellType(v) for v in cells) \
        if cells is not None else None
    fn = _FunctionType(template_fn.__code__, template_fn.__globals__, template_fn.__name__,
                       defaults, closure)
    fn.__qualname__ = template_fn.__qualname__
    fn.__module__ = template_fn.__module__
    fn.__doc__ = template_fn.__doc__
    if kwdefaults is not None:
        fn.__kwdefaults__ = kwdefaults
    if template_fn.__dict__:
        fn.__dict__.update(template_fn.__dict__)
    return fn


def _make_class(uid, meta, name, bases, kwargs):
    cls = _by_uid.get(uid)
    if cls is not None:
        return cls
    import types

    cls = types.new_class(name, bases, {"metaclass": meta}, lambda ns: ns.update(kwargs))
    _register(uid, cls)
    _by_value_types.add(cls)
    _pending.add(cls)
    return cls


def _make_enum(uid, meta, name, bases, members, module, qualname):
    cls = _by_uid.get(uid)
    if cls is not None:
        return cls
    classdict = meta.__prepare__(name, bases)
    for key, value in members.items():
        classdict[key] = value
    classdict["__module__"] = module
    classdict["__qualname__"] = qualname
    cls = meta.__new__(meta, name, bases, classdict)
    _register(uid, cls)
    _by_value_types.add(cls)
    _pending.add(cls)
    return cls


def _set_class_state(cls, state) -> None:
    if cls not in _pending:
        return   # known here already (or the caller's own class): kept as it first came
    _pending.discard(cls)
    registered = state.pop("_abc_registered", ())
    firstlineno = state.pop("__firstlineno__", None)
    for name, value in state.items():
        if name in ("__module__", "__qualname__") and getattr(cls, name) == value:
            continue
        setattr(cls, name, value)
    if firstlineno is not None:
        cls.__firstlineno__ = firstlineno
    for subclass in registered:
        cls.register(subclass)


def _make_lru(uid, maxsize, typed):
    # The wrapper first (pickle memoizes it: the function it wraps usually
    # calls it by name), the function it wraps once that is rebuilt.
    wrapper = _by_uid.get(uid)
    if wrapper is not None:
        return wrapper
    import functools

    target = []

    def forward(*args, **kwargs):
        return target[0](*args, **kwargs)

    wrapper = functools.lru_cache(maxsize=maxsize, typed=typed)(forward)
    _register(uid, wrapper)
    _pending.add(wrapper)
    return wrapper


def _set_lru(wrapper, fn) -> None:
    if wrapper not in _pending:
        return
    _pending.discard(wrapper)
    import functools

    wrapper.__wrapped__.__closure__[0].cell_contents.append(fn)
    functools.update_wrapper(wrapper, fn)


def _keep_loaded(uid: bytes, fn) -> None:
    if len(_loaded) >= _LOADED_MAX:
        del _loaded[next(iter(_loaded))]
    _loaded[uid] = fn


def _install(ns_uid: bytes, name: str, stamp: int, value) -> None:
    """Install a global if its value is newer than what its namespace holds
    (a worker keeps what it set itself until the caller rebinds the name);
    never into a globals dict of this interpreter's own."""
    g = _namespaces.get(ns_uid)
    if g is None or id(g) in _home:
        return
    key = (id(g), name)
    if stamp > _installed.get(key, -1) or name not in g:
        g[name] = value
        _installed[key] = stamp


def _load_definition(uid: bytes, definition):
    """Rebuild a definition's root and install its globals."""
    if definition is None:
        definition = _core.get_definition(uid)
        if definition is None:
            raise RuntimeError(
                "a function or class sent by value is not defined in this process: pickle "
                "it with interpool._byvalue.dumps(obj, portable=True) for another process")
    u = pickle.Unpickler(io.BytesIO(definition))
    root = u.load()
    for ns_uid, values in u.load():
        for name, (stamp, value) in values.items():
            _install(ns_uid, name, stamp, value)
    return root


def _install_changes(changes) -> None:
    for ns_uid, name, stamp, value in changes:
        _install(ns_uid, name, stamp, value)


def function(uid: bytes, definition=None, changes=None):
    """The function of a definition (loaded once here), with the globals
    rebound since that came with this call."""
    fn = _loaded.get(uid)
    if fn is None:
        fn = _load_definition(uid, definition)
        _keep_loaded(uid, fn)
        if (id(fn.__code__), id(fn.__globals__)) not in _templates:
            # Sent on from here (a result, a nested pool), it keeps its uid:
            # where it came from, it is the function it was.
            _new_template(fn, uid)
    if changes:
        _install_changes(changes)
    return fn


_function = function


def _function_copy(uid: bytes, definition=None, changes=None):
    """A function of this definition with its own defaults and captured
    values (set by _set_instance once pickle has memoized it: a closure
    may capture itself)."""
    fn = function(uid, definition, changes)
    free = len(fn.__code__.co_freevars)
    return _copy(fn, None, None, (_EmptyCell,) * free if free else None)


def _object(uid: bytes, definition=None):
    """A class or an lru_cache wrapper (loaded once here: its identity)."""
    obj = _by_uid.get(uid)
    if obj is None:
        obj = _load_definition(uid, definition)
    return obj


class Stateful:
    """A registered by-value function whose calls bring state as their first
    argument: (rebound globals, defaults, kwdefaults, captured values)."""

    __slots__ = ("fn",)

    def __init__(self, fn) -> None:
        self.fn = fn

    def __call__(self, state, /, *args, **kwargs):
        changes, defaults, kwdefaults, cells = state
        if changes:
            _install_changes(changes)
        fn = self.fn
        if defaults is not None or kwdefaults is not None or cells is not None:
            fn = _copy(fn, defaults, kwdefaults, cells)
        return fn(*args, **kwargs)


def callable_of(uid: bytes, stateful: bool):
    """What a worker calls for a function registered by value."""
    fn = function(uid)
    return Stateful(fn) if stateful else fn
