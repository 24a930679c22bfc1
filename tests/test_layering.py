"""Imports flow one way: leaves (model, batch, errors, ...) at the bottom, the tokenizer, the data
pipeline, the Lightning layer (module, data module, eval), callbacks, the CLI, commands on top.
Every `lit_llm` import in the package (function-level ones included) is checked against the layers."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [
    [
        "lit_llm.errors",
        "lit_llm.batch",
        "lit_llm.model",
        "lit_llm.document_mask",
        "lit_llm.kv_cache",
        "lit_llm.chunked_loss",
        "lit_llm.muon",
        "lit_llm.rng_state",
        "lit_llm.spike_detector",
        "lit_llm.safe_pickle",
        "lit_llm.quiet",
        "lit_llm.command_options",
    ],
    ["lit_llm.tokenizer"],
    [
        "lit_llm.data",
        "lit_llm.checkpoint",
        "lit_llm.hf",
        "lit_llm.hf_import",
        "lit_llm.gguf_export",
        "lit_llm.gguf_sentencepiece",
        "lit_llm.plot",
        "lit_llm.parallel",
        "lit_llm.optim",
        "lit_llm.time_budget",
    ],
    [
        "lit_llm.module",
        "lit_llm.data.datamodule",
        "lit_llm.rollback",
        "lit_llm.checkpoint_io",
        "lit_llm.strategy",
    ]
    + ["lit_llm.eval"]
    + ["lit_llm.generate", "lit_llm.export", "lit_llm.model_card"],
    ["lit_llm.callbacks"],
    ["lit_llm.lightning_cli"],
    ["lit_llm.cli", "lit_llm.demo", "lit_llm.plan", "lit_llm"],
]


def layer(module: str) -> int:
    """The layer of the longest listed prefix of `module`."""
    best, found = -1, None
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), i
    assert found is not None, f"{module} is in no layer: add it to LAYERS"
    return found


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    parts = ["lit_llm", "callbacks", *parts[1:]] if parts[0] == "callbacks" else parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lit_llm"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lit_llm")}
    return found


def test_imports_flow_one_way():
    files = [*ROOT.glob("lit_llm/**/*.py"), *ROOT.glob("callbacks/*.py")]
    upward = set()
    for path in files:
        source = module_name(path)
        for target in imports(path):
            if target.startswith(source + ".") or source.startswith(target + "."):
                continue  # a package and its own modules
            if layer(target) > layer(source):
                upward.add((source, target))
    assert not upward, sorted(upward)
