"""Imports like numpy in a subinterpreter: its C core refuses to load there
and the package re-raises that inside a misleading "bad install" message."""

try:
    from . import _core_ext
except ImportError as exc:
    raise ImportError(
        "\n\nIMPORTANT: PLEASE READ THIS FOR ADVICE ON HOW TO SOLVE THIS ISSUE!\n\n"
        "Importing the helpers_fake_numpy C-extensions failed. This error can happen for\n"
        "many reasons, often due to issues with your setup or how it was installed.\n"
        "This is unlikely to be an issue of the package but will be caused by a bad install\n"
        f"or environment on your machine.\n\nOriginal error was: {exc}\n"
    ) from exc

VALUE = _core_ext.VALUE
