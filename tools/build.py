"""Build interpool's C extension in place (src/interpool/_core.<abi>.so).

The sources and flags come from setup.py (the one build definition).
Rebuilds only when a source, a header or a flag changed.
INTERPOOL_DEBUG=1: debug build (-O0 -g, asserts on).
INTERPOOL_CFLAGS adds compiler flags (e.g. sanitizers);
INTERPOOL_WERROR=0 turns off warnings-as-errors.
"""

import importlib.util
import os
import shlex
import subprocess
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "src", "interpool")


def load_setup():
    spec = importlib.util.spec_from_file_location("interpool_setup", os.path.join(ROOT, "setup.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)   # __name__ is not "__main__": setup() does not run
    return module


def main() -> int:
    ext = load_setup().extension(extra_cflags=shlex.split(os.environ.get("INTERPOOL_CFLAGS", "")))
    sources = [os.path.join(ROOT, s) for s in ext.sources]
    deps = sources + [os.path.join(ROOT, h) for h in ext.depends]
    deps += [__file__, os.path.join(ROOT, "setup.py")]
    target = os.path.join(PKG, "_core" + sysconfig.get_config_var("EXT_SUFFIX"))
    werror = [] if os.environ.get("INTERPOOL_WERROR") == "0" else ["-Werror"]
    flags = ext.extra_compile_args + werror
    stamp = target + ".flags"
    flags_same = False
    if os.path.exists(stamp):
        with open(stamp) as f:
            flags_same = f.read() == repr(flags)
    if (
        flags_same
        and os.path.exists(target)
        and os.path.getmtime(target) >= max(os.path.getmtime(p) for p in deps)
    ):
        return 0
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC").split()[0]
    tmp = f"{target}.{os.getpid()}.tmp"
    includes = ["-I" + os.path.join(ROOT, d) for d in ext.include_dirs]
    cmd = [
        cc, "-shared", "-fPIC", "-pthread", *flags,
        "-I" + sysconfig.get_path("include"), *includes, *sources, "-o", tmp,
    ]
    print("build:", " ".join(cmd[:10]), "...", file=sys.stderr)
    result = subprocess.run(cmd)
    if result.returncode:
        return result.returncode
    os.replace(tmp, target)  # atomic: concurrent runs never see half a file
    with open(stamp, "w") as f:
        f.write(repr(flags))
    return 0


if __name__ == "__main__":
    sys.exit(main())
