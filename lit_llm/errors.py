"""The kit's user-facing error: bad input, reported as one line naming the file and the problem."""

import contextlib
import difflib
import re


class UserError(ValueError):
    """Bad input from the user (a path, a file's content, a config). `lit-llm` prints it as one line, exit 1."""


def one_line_parse_error(err: Exception, options: set[str]) -> str:
    """A parser error as one line, naming the unknown option and the closest known one."""
    message = " ".join(str(err).split())
    unknown = re.search(r"(--[\w.\-]+)", message) if "unrecognized" in message else None
    nested = re.search(r'Parser key "([\w.]+)".*NestedArg\(key=.([\w.]+).', message)
    if nested:  # an unknown field of a dataclass-typed option, e.g. --model.arch.n_layers
        key, field = nested.groups()
        message = f"--{key}.{field}: no such option"
        options = options | _dataclass_options(str(err), key)
        unknown = re.search(r"(--[\w.\-]+)", message)
    if unknown:
        close = difflib.get_close_matches(unknown.group(1), sorted(options), n=1, cutoff=0.6)
        if close:
            message += f" (did you mean {close[0]}?)"
    return message


def _dataclass_options(message: str, key: str) -> set[str]:
    """The fields of the dataclasses a union-typed option accepts, named in jsonargparse's message."""
    import dataclasses
    import importlib

    found = set()
    subtypes = message.split("Given value")[0]  # the parser's own types, not the user's value
    for path in re.findall(r"<class '(lit_llm\.[\w.]+)'>", subtypes):
        module, _, name = path.rpartition(".")
        with contextlib.suppress(Exception):
            cls = getattr(importlib.import_module(module), name)
            if dataclasses.is_dataclass(cls):
                found |= {f"--{key}.{f.name}" for f in dataclasses.fields(cls)}
    return found
