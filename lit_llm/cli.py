"""The `lit-llm` command.

    lit-llm fit --config configs/experiments/tiny_cpu.yaml      # LightningCLI
    lit-llm validate --config ... --ckpt_path ...                # LightningCLI
    lit-llm tokenizer train --input PATH --vocab_size N --output DIR
    lit-llm data prepare|inspect|merge ...
    lit-llm generate|export|evaluate|demo ...
    lit-llm plan --config configs/experiments/llama_1b_fsdp.yaml     # memory and tokens/s before launch

`fit` and `validate` go to LightningCLI (every Trainer, model, data and callback option
is a flag or YAML key). The other commands are typed functions turned into parsers by
jsonargparse, so `--help` shows each option with its docstring.
"""

from __future__ import annotations

import importlib
import sys
from argparse import ArgumentError

from lit_llm.errors import UserError, one_line_parse_error

# command path -> "module:function"; each function's signature and docstring define its flags.
PLAIN_COMMANDS: dict[tuple[str, ...], str] = {
    ("tokenizer", "train"): "lit_llm.data.tokenizer_training:train_command",
    ("data", "prepare"): "lit_llm.data.prepare:prepare_command",
    ("data", "inspect"): "lit_llm.data.summary:inspect_command",
    ("data", "merge"): "lit_llm.data.prepare:merge_command",
    ("checkpoint", "convert"): "lit_llm.checkpoint:convert_command",
    ("generate",): "lit_llm.generate:generate_command",
    ("export",): "lit_llm.export:export_command",
    ("evaluate",): "lit_llm.eval.command:evaluate_command",
    ("demo",): "lit_llm.demo:demo_command",
}
LIGHTNING_COMMANDS = ("fit", "validate")
# commands that parse a `lit-llm fit` config themselves: name -> "module:function(args)"
CONFIG_COMMANDS = {"plan": "lit_llm.plan:plan_main"}


def _usage() -> str:
    names = sorted(
        {" ".join(path) for path in PLAIN_COMMANDS} | set(LIGHTNING_COMMANDS) | set(CONFIG_COMMANDS)
    )
    lines = ["usage: lit-llm COMMAND [options]   (lit-llm COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name}" for name in names]
    return "\n".join(lines)


def _resolve(argv: list[str]) -> tuple[str | None, list[str]]:
    """Find the longest command path at the start of argv; return its target and the remaining args."""
    for length in (2, 1):
        path = tuple(argv[:length])
        if path in PLAIN_COMMANDS:
            return PLAIN_COMMANDS[path], argv[length:]
    return None, argv


def _list_params(func) -> set[str]:
    """Names of the function's parameters whose type admits a list."""
    import inspect

    return {name for name, p in inspect.signature(func).parameters.items() if "list" in str(p.annotation)}


def _gather_list_values(args: list[str], list_params: set[str]) -> list[str]:
    """Rewrite `--name a b c` into `--name ["a", "b", "c"]` for list parameters (jsonargparse takes one value)."""
    import json

    out, i = [], 0
    while i < len(args):
        arg = args[i]
        name = arg[2:] if arg.startswith("--") and "=" not in arg else None
        if name in list_params:
            values = []
            while i + 1 < len(args) and not args[i + 1].startswith("--"):
                values.append(args[i + 1])
                i += 1
            out += [arg, json.dumps(values) if len(values) > 1 else (values[0] if values else "")]
        else:
            out.append(arg)
        i += 1
    return out


def _positional_first(func, args: list[str]) -> list[str]:
    """`lit-llm data inspect FOLDER` -> `--folder FOLDER`: a leading bare value names the first parameter."""
    import inspect

    if args and not args[0].startswith("-"):
        first = next(iter(inspect.signature(func).parameters))
        return [f"--{first}", *args]
    return args


def _run_plain(target: str, args: list[str], prog: str) -> None:
    from jsonargparse import CLI

    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    args = _gather_list_values(_positional_first(func, args), _list_params(func))
    try:
        CLI(func, args=args, prog=prog, as_positional=False, exit_on_error=False, allow_abbrev=False)
    except ArgumentError as err:
        import inspect

        options = {f"--{name}" for name in inspect.signature(func).parameters}
        raise UserError(one_line_parse_error(err, options)) from None


def main(argv: list[str] | None = None) -> None:
    from jsonargparse import set_parsing_settings

    from lit_llm.quiet import silence_known_noise

    silence_known_noise()
    # Dataclass fields are documented by the string under each one: show those in --help.
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return
    try:
        if argv[0] in LIGHTNING_COMMANDS:
            from lit_llm.lightning_cli import run_lightning_cli

            run_lightning_cli(argv)
            return
        if argv[0] in CONFIG_COMMANDS:
            module_name, func_name = CONFIG_COMMANDS[argv[0]].split(":")
            getattr(importlib.import_module(module_name), func_name)(argv[1:])
            return
        target, rest = _resolve(argv)
        if target is None:
            group = [" ".join(p) for p in PLAIN_COMMANDS if p[0] == argv[0]]
            hint = f" (one of: {', '.join(sorted(group))})" if group else ""
            raise UserError(f"unknown command {' '.join(argv[:2])!r}{hint}; run `lit-llm --help`")
        _run_plain(target, rest, prog="lit-llm " + " ".join(argv[: len(argv) - len(rest)]))
    except UserError as err:
        print(f"lit-llm: error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
