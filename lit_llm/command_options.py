"""A command's flags from a config dataclass: each option's name, type, default and help written once.

    @command_options(PrepareConfig)
    def prepare_command(**options) -> None:
        prepare_dataset(PrepareConfig(**options))

The command's signature gets one keyword parameter per field (its own parameters stay first) and its
docstring an `Args:` entry per field made of the field's docstring, so a parser built from the signature
(jsonargparse's CLI, as `lit-llm` does) shows flat, documented flags (`--vocab_size`, not `--config.vocab_size`).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable

import docstring_parser


def command_options(config_class: type, **defaults) -> Callable[[Callable], Callable]:
    """Decorator giving `command(..., **options)` the fields of `config_class` as parameters and help;
    `defaults` replace the fields' own defaults in the signature (a callback's, say; the command must
    then apply them too)."""
    hints = typing.get_type_hints(config_class)
    docs = field_docs(config_class)
    fields = dataclasses.fields(config_class)
    unknown = set(defaults) - {f.name for f in fields}
    if unknown:
        raise TypeError(f"not {config_class.__name__} fields: {sorted(unknown)}")

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        for f in fields:
            default = f.default
            if default is dataclasses.MISSING:
                has_factory = f.default_factory is not dataclasses.MISSING
                default = f.default_factory() if has_factory else inspect.Parameter.empty
            default = defaults.get(f.name, default)
            keyword = inspect.Parameter.KEYWORD_ONLY
            params.append(inspect.Parameter(f.name, keyword, default=default, annotation=hints[f.name]))
        command.__signature__ = signature.replace(parameters=params)
        doc = inspect.cleandoc(command.__doc__ or "")
        doc += "" if "\nArgs:" in doc else "\n\nArgs:"
        command.__doc__ = doc + "".join(f"\n    {name}: {text}" for name, text in docs.items()) + "\n"
        return command

    return decorate


def field_docs(config_class: type) -> dict[str, str]:
    """Each field's docstring (the string under it), on one line."""
    parsed = docstring_parser.parse_from_object(config_class)
    docs = {p.arg_name: " ".join((p.description or "").split()) for p in parsed.params}
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(config_class)}
