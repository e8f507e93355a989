"""Build interpool's C extension in place (src/interpool/_core.<abi>.so).

Rebuilds only when a C source or header is newer than the extension.
INTERPOOL_CFLAGS adds compiler flags (e.g. "-O0 -g" or sanitizers);
INTERPOOL_WERROR=0 turns off warnings-as-errors.
"""

import glob
import os
import shlex
import subprocess
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "src", "interpool")


def main() -> int:
    sources = sorted(glob.glob(os.path.join(PKG, "*.c")))
    deps = sources + glob.glob(os.path.join(PKG, "*.h")) + [__file__]
    target = os.path.join(PKG, "_core" + sysconfig.get_config_var("EXT_SUFFIX"))
    extra = shlex.split(os.environ.get("INTERPOOL_CFLAGS", ""))
    stamp = target + ".flags"
    flags_same = os.path.exists(stamp) and open(stamp).read() == repr(extra)
    if (
        flags_same
        and os.path.exists(target)
        and os.path.getmtime(target) >= max(os.path.getmtime(p) for p in deps)
    ):
        return 0
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC").split()[0]
    werror = [] if os.environ.get("INTERPOOL_WERROR") == "0" else ["-Werror"]
    tmp = f"{target}.{os.getpid()}.tmp"
    cmd = [
        cc, "-shared", "-fPIC", "-pthread", "-std=c11", "-O2", "-g", "-DNDEBUG",
        "-Wall", "-Wextra", *werror, "-fvisibility=hidden",
        "-I" + sysconfig.get_path("include"), *extra, *sources, "-o", tmp,
    ]
    print("build:", " ".join(cmd[:12]), "...", file=sys.stderr)
    result = subprocess.run(cmd)
    if result.returncode:
        return result.returncode
    os.replace(tmp, target)  # atomic: concurrent runs never see half a file
    with open(stamp, "w") as f:
        f.write(repr(extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
