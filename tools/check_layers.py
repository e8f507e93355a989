"""Check that interpool's code keeps its layers (run by `make test`).

C core (src/core/<layer>/): layers, lowest first:

    base -> mem -> codec -> runtime -> data -> module

- every `#include "..."` names a header as "<layer>/<file>.h" of the same
  layer or a lower one;
- with --symbols (needs a compiler and Python's headers, so it runs through
  tools/python): every function or variable a file uses from another file
  is defined in the same layer or a lower one, whatever the file declared
  (a local `extern` cannot dodge the rule);
- no two files depend on each other in a circle (x.c and x.h count as one
  file), by includes or by symbols.

Python (src/interpool/*.py): no import circles between modules, counting
imports inside functions too.  The C core calling Python through its hooks
table (module/hooks.c -> interpool._hooks) is the one upward call, by
design, and is not counted.

Usage: python tools/check_layers.py [--symbols] [--root DIR]
Exit status 1 with one line per violation.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import tempfile

LAYERS = ["base", "mem", "codec", "runtime", "data", "module"]
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def c_units(core: str) -> dict[str, list[str]]:
    """{"layer/name": [paths of name.c / name.h]} for every C file."""
    units: dict[str, list[str]] = {}
    for layer in sorted(os.listdir(core)):
        folder = os.path.join(core, layer)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(name)
            if ext in (".c", ".h"):
                units.setdefault(f"{layer}/{stem}", []).append(os.path.join(folder, name))
    return units


def layer_of(unit: str) -> int:
    return LAYERS.index(unit.split("/")[0])


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def check_includes(core: str, units: dict[str, list[str]]) -> tuple[list[str], dict[str, set[str]]]:
    errors: list[str] = []
    graph: dict[str, set[str]] = {u: set() for u in units}
    for unit, paths in units.items():
        if unit.split("/")[0] not in LAYERS:
            errors.append(f"{unit}: folder is not a known layer ({', '.join(LAYERS)})")
            continue
        for path in paths:
            rel = os.path.relpath(path, core)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for header in INCLUDE.findall(text):
                target = header[:-2] if header.endswith(".h") else header
                if target not in units or target.split("/")[0] not in LAYERS:
                    errors.append(f"{rel}: includes \"{header}\", not a header of the core "
                                  "(name it as \"<layer>/<file>.h\")")
                    continue
                if layer_of(target) > layer_of(unit):
                    errors.append(f"{rel}: includes \"{header}\" from the higher layer "
                                  f"'{target.split('/')[0]}' (a {unit.split('/')[0]} file may "
                                  f"include only {', '.join(LAYERS[:layer_of(unit) + 1])})")
                if target != unit:
                    graph[unit].add(target)
    return errors, graph


def check_symbols(core: str, units: dict[str, list[str]]) -> tuple[list[str], dict[str, set[str]]]:
    """Compile each .c to an object and compare what it uses with who defines it."""
    sys.path.insert(0, os.path.dirname(core.rstrip("/").rsplit("/src/", 1)[0] + "/setup.py"))
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC").split()[0]
    flags = ["-std=c11", "-fPIC", "-O0", "-I" + sysconfig.get_path("include"), "-I" + core]
    flags += shlex.split(os.environ.get("INTERPOOL_CFLAGS", ""))
    defined: dict[str, str] = {}
    used: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for unit, paths in units.items():
            for path in paths:
                if not path.endswith(".c"):
                    continue
                obj = os.path.join(tmp, unit.replace("/", "_") + ".o")
                subprocess.run([cc, *flags, "-c", path, "-o", obj], check=True)
                out = subprocess.run(["nm", "-g", obj], check=True, capture_output=True,
                                     text=True).stdout
                used[unit] = set()
                for line in out.splitlines():
                    parts = line.split()
                    if len(parts) == 2 and parts[0] == "U":
                        used[unit].add(parts[1])
                    elif len(parts) == 3 and parts[1] in "TDBRC":
                        defined[parts[2]] = unit
    errors: list[str] = []
    graph: dict[str, set[str]] = {u: set() for u in units}
    for unit, symbols in sorted(used.items()):
        for sym in sorted(symbols):
            owner = defined.get(sym)
            if owner is None or owner == unit:
                continue   # Python's C API, libc, ...
            graph[unit].add(owner)
            if layer_of(owner) > layer_of(unit):
                errors.append(f"{unit}.c: uses {sym} from the higher layer file {owner}.c")
    return errors, graph


def python_imports(pkg: str) -> dict[str, set[str]]:
    """{module: sibling modules it imports anywhere in its body}."""
    modules = {os.path.splitext(n)[0] for n in os.listdir(pkg) if n.endswith(".py")}
    graph: dict[str, set[str]] = {}
    for mod in sorted(modules):
        with open(os.path.join(pkg, mod + ".py"), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:
                    deps.add(node.module.split(".")[0])
                elif node.level == 1:
                    deps.update(a.name for a in node.names)
                elif node.level == 0 and node.module and node.module.startswith("interpool."):
                    deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("interpool."):
                        deps.add(alias.name.split(".")[1])
        graph[mod] = {d for d in deps if d in modules and d != mod}
    return graph


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser.add_argument("--symbols", action="store_true",
                        help="also compile each file and check the symbols it uses")
    args = parser.parse_args(argv)
    core = os.path.join(args.root, "src", "core")
    pkg = os.path.join(args.root, "src", "interpool")
    units = c_units(core)
    errors, graph = check_includes(core, units)
    if args.symbols and not errors:
        sym_errors, sym_graph = check_symbols(core, units)
        errors += sym_errors
        for unit, deps in sym_graph.items():
            graph[unit] |= deps
    for cycle in find_cycles(graph):
        errors.append("C files depend on each other in a circle: " + " <-> ".join(cycle))
    for cycle in find_cycles(python_imports(pkg)):
        errors.append("Python modules import each other in a circle: " + " <-> ".join(cycle))
    for e in errors:
        print("check_layers:", e)
    if not errors:
        what = "includes, symbols" if args.symbols else "includes"
        print(f"check_layers: ok ({len(units)} C files in {len(LAYERS)} layers: {what}; "
              f"Python imports)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
