"""The model card (README.md) of an export, written from the checkpoint, its run folder and the data manifest.

    from lit_llm.model_card import gather_facts, render_card
    facts = gather_facts(gpt, info, tokenizer_dir="runs/demo/tokenizer")
    Path("runs/demo/hf/README.md").write_text(render_card(facts, "demo"))

What it reads, each optional (a missing piece is said in the card, never guessed):
- the run folder (RUN for RUN/checkpoints/X.ckpt): RUN/logs/version_*/metrics.csv for the last validation
  loss, bits per byte and BenchmarkEval scores at or before the checkpoint's step; the newest
  RUN/logs/version_*/config.yaml for the data folder it trained on; RUN/eval/<checkpoint>.json, the
  results `lit-llm evaluate` writes;
- the data folder's manifest.json: sources and mixture, filters and what they removed, exact and near
  dedup, benchmark decontamination (`decontamination`, absent in manifests made before it existed), split;
- the tokenizer folder's report.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lit_llm.checkpoint import CheckpointInfo
from lit_llm.model import GPT, ModelConfig


@dataclass
class CardFacts:
    """Everything the card says, gathered before any text is written."""

    config: ModelConfig
    parameters: int
    info: CheckpointInfo
    manifest: dict | None = None
    manifest_path: Path | None = None
    validation: dict[str, float] = field(default_factory=dict)
    """val/loss, val/bpb, val/ppl: the last logged at or before the checkpoint's step."""
    benchmarks: dict[str, float] = field(default_factory=dict)
    """{"<task>/<metric>": value}."""
    benchmark_source: str = ""
    tokenizer_report: dict | None = None
    files: list[str] = field(default_factory=list)
    """The export's model files (for the usage lines)."""


def run_folder(ckpt_file: Path) -> Path | None:
    """RUN for RUN/checkpoints/X.ckpt or RUN/checkpoints/kept/X.ckpt; None for a checkpoint elsewhere."""
    for parent in ckpt_file.parents[:3]:
        if parent.name == "checkpoints":
            return parent.parent
    return None


def find_manifest(run: Path | None, data: str | Path | None = None) -> Path | None:
    """The manifest.json of `data` (a data folder or the file), else of the data folder the run's newest
    config.yaml names (as written, else relative to the run's parent folders)."""
    if data is not None:
        path = Path(data)
        return path if path.is_file() else path / "manifest.json"
    if run is None:
        return None
    configs = sorted(run.glob("logs/version_*/config.yaml"), key=lambda p: int(p.parent.name.split("_")[1]))
    for config in reversed(configs):
        try:
            named = (yaml.safe_load(config.read_text()) or {}).get("data", {}).get("path")
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        if named:
            for base in (Path.cwd(), run, *run.parents):
                if (base / named / "manifest.json").is_file():
                    return base / named / "manifest.json"
    return None


def exported_parameters(gpt: GPT) -> int:
    """Parameters of the exported model: the vocabulary rows the GPT pads to a multiple are not exported."""
    config = gpt.config
    padding = (config.padded_vocab_size - config.vocab_size) * config.d_model
    return gpt.num_params() - padding * (1 if config.tie_embeddings else 2)


def logged_metrics(run: Path | None, step: int) -> tuple[dict[str, float], dict[str, float]]:
    """(validation, benchmark) metrics from the run's CSV logs: each the last row at or before `step`."""
    if run is None:
        return {}, {}
    from lit_llm.plot import read_metrics

    validation: dict[str, float] = {}
    benchmarks: dict[str, float] = {}
    for row in read_metrics(run):
        if not row.get("step") or int(row["step"]) > step:
            continue
        values = {k: float(v) for k, v in row.items() if v not in (None, "") and "/" in k}
        if "val/loss" in values:
            validation = {k: v for k, v in values.items() if k.startswith("val/")}
        scores = {k.removeprefix("eval/"): v for k, v in values.items() if k.startswith("eval/")}
        scores.pop("seconds", None)
        if scores:
            benchmarks = scores
    return validation, benchmarks


def evaluate_results(ckpt_file: Path) -> tuple[dict[str, float], str]:
    """Scores from the results JSON `lit-llm evaluate` wrote for this checkpoint, and where they came from."""
    from lit_llm.eval.command import default_output

    path = default_output(ckpt_file)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, ""
    from lit_llm.eval.runner import flat_metrics

    config = results.get("config", {})
    tasks = config.get("tasks") or list(results.get("results", {}))
    scores = {k.removeprefix("eval/"): v for k, v in flat_metrics(results, list(tasks)).items()}
    limit = config.get("limit")
    sample = f", the first {limit} items of each task" if limit else ""
    return scores, f"`lit-llm evaluate` ({path.name}{sample})"


def gather_facts(
    gpt: GPT,
    info: CheckpointInfo,
    tokenizer_dir: str | Path | None = None,
    data: str | Path | None = None,
) -> CardFacts:
    """What the card needs, from the checkpoint, its run folder, the data manifest and the tokenizer."""
    run = run_folder(Path(info.path).resolve())
    facts = CardFacts(config=gpt.config, parameters=exported_parameters(gpt), info=info)
    manifest = find_manifest(run, data)
    if manifest is not None and manifest.is_file():
        facts.manifest, facts.manifest_path = json.loads(manifest.read_text(encoding="utf-8")), manifest
    facts.validation, logged = logged_metrics(run, info.global_step)
    facts.benchmarks, facts.benchmark_source = evaluate_results(Path(info.path))
    if not facts.benchmarks and logged:
        facts.benchmarks, facts.benchmark_source = logged, "BenchmarkEval during training"
    report = Path(tokenizer_dir) / "report.json" if tokenizer_dir else None
    if report is not None and report.is_file():
        facts.tokenizer_report = json.loads(report.read_text(encoding="utf-8"))
    return facts


# ---------------------------------------------------------------- rendering


def _n(x: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:g}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def render_card(facts: CardFacts, name: str) -> str:
    """The README.md text: front matter for the Hugging Face Hub, then the sections."""
    front = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [lit-llm, llama, pretrained, base-model]",
        "---",
        "",
    ]
    sections = [
        _summary(facts, name),
        _usage(facts),
        _architecture(facts),
        _training(facts),
        _data(facts),
        _tokenizer(facts),
        _evaluation(facts),
        _limits(facts),
    ]
    return "\n".join(front + [line for section in sections for line in [*section, ""]]).rstrip() + "\n"


def _summary(facts: CardFacts, name: str) -> list[str]:
    tokens = facts.info.tokens_seen
    return [
        f"# {name}",
        "",
        f"A {_n(facts.parameters)}-parameter Llama-architecture base language model, pre-trained from "
        f"scratch with lit-llm on {_n(tokens)} tokens ({facts.info.global_step} optimizer "
        "steps). It continues text; it was not instruction-tuned or aligned.",
    ]


def _usage(facts: CardFacts) -> list[str]:
    gguf = [f for f in facts.files if f.endswith(".gguf")]
    if gguf:
        return [
            "## Use",
            "",
            "```bash",
            f'llama-cli -m {gguf[0]} -p "Once upon a time" -n 64 --temp 0     # llama.cpp',
            "ollama create my-model -f Modelfile && ollama run my-model     # Ollama (Modelfile in this folder)",
            "```",
            "",
            "LM Studio: import the .gguf file (`lms import`).",
        ]
    return [
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "tok = AutoTokenizer.from_pretrained(PATH)",
        "model = AutoModelForCausalLM.from_pretrained(PATH)",
        'batch = tok(["Once upon a time", "def main():"], return_tensors="pt", padding=True)  # pads left',
        "out = model.generate(**batch, max_new_tokens=64, do_sample=False)",
        "print(tok.batch_decode(out, skip_special_tokens=True))",
        "```",
        "",
        "For llama.cpp, Ollama and LM Studio export a GGUF file: `lit-llm export --format gguf` "
        "(llama.cpp's convert_hf_to_gguf.py does not recognise a newly trained vocabulary).",
    ]


def _architecture(facts: CardFacts) -> list[str]:
    c = facts.config
    kind = "MHA" if c.n_kv_head == c.n_head else ("MQA" if c.n_kv_head == 1 else "GQA")
    rows = [
        ["architecture", "LlamaForCausalLM: pre-norm RMSNorm, RoPE, SwiGLU, no biases"],
        ["parameters", f"{facts.parameters:,}"],
        ["layers", c.n_layer],
        ["hidden size", c.d_model],
        ["attention heads", f"{c.n_head} ({c.n_kv_head} key/value heads, {kind}), head size {c.head_size}"],
        ["feed-forward size", c.ffn_hidden],
        ["context length", c.max_seq_len],
        ["vocabulary", c.vocab_size],
        ["RoPE theta", f"{c.rope_theta:g}"],
        ["RMSNorm eps", f"{c.norm_eps:g}"],
        ["tied embeddings", "yes" if c.tie_embeddings else "no"],
    ]
    return ["## Model", "", *_table(["", ""], rows)]


def _training(facts: CardFacts) -> list[str]:
    v = facts.validation
    rows = [
        ["tokens seen", f"{facts.info.tokens_seen:,}"],
        ["optimizer steps", facts.info.global_step],
        ["checkpoint", Path(facts.info.path).name],
    ]
    if v:
        rows += [["final validation loss", f"{v['val/loss']:.4f} (nats per token)"]]
        rows += [["final validation bits per byte", f"{v['val/bpb']:.4f}"]] if "val/bpb" in v else []
        rows += [["final validation perplexity", f"{v['val/ppl']:.2f}"]] if "val/ppl" in v else []
    else:
        rows += [["final validation loss", "not recorded (no validation in the run's logs)"]]
    return ["## Training", "", *_table(["", ""], rows)]


def _data(facts: CardFacts) -> list[str]:
    m = facts.manifest
    if m is None:
        return [
            "## Data",
            "",
            "Not recorded: no data manifest was found for this run (export with --data DIR).",
        ]
    lines = [
        "## Data",
        "",
        f"From `{facts.manifest_path}` ({m.get('created_by', 'lit-llm')}): {m.get('num_documents', 0):,} "
        f"documents, {m.get('num_tokens', 0):,} tokens.",
        "",
        *_table(
            [
                "source",
                "kind",
                "weight",
                "read",
                "after filters",
                "exact dups",
                "near dups",
                "decontaminated",
                "tokens",
            ],
            [_source_row(s) for s in m.get("sources", [])],
        ),
    ]
    return lines + _filters(m) + _dedup(m) + _decontamination(m) + _split(m)


def _source_row(s: dict) -> list:
    def get(key):
        return f"{s[key]:,}" if isinstance(s.get(key), int) else "-"

    return [
        s.get("name", "?"),
        s.get("kind", "-"),
        f"{s.get('weight', 1.0):g}",
        get("documents_read"),
        get("documents_after_filters"),
        get("exact_duplicates_removed"),
        get("near_duplicates_removed"),
        get("decontaminated"),
        f"{s.get('num_tokens', 0):,}" if "num_tokens" in s else "-",
    ]


def _filters(m: dict) -> list[str]:
    f = m.get("filters") or {}
    per = f.get("per_filter") or {}
    if not per:
        return ["", "Filters: none recorded."]
    rows = []
    for name, c in per.items():
        reasons = sorted(c.get("reasons", {}).items(), key=lambda kv: -kv[1])[:3]
        why = ", ".join(f"{r} {n}" for r, n in reasons) or "-"
        rows.append([name, f"{c.get('documents_in', 0):,}", f"{c.get('documents_removed', 0):,}", why])
    head = f"Filters kept {f.get('documents_out', 0):,} of {f.get('documents_in', 0):,} documents:"
    return ["", head, "", *_table(["filter", "seen", "removed", "top reasons"], rows)]


def _dedup(m: dict) -> list[str]:
    d = m.get("dedup") or {}
    near = d.get("near") or {}
    how = f" ({near['method']})" if near.get("method") else ""
    return [
        "",
        f"Deduplication removed {d.get('exact_duplicates_removed', 0):,} exact and "
        f"{d.get('near_duplicates_removed', 0):,} near duplicates{how}.",
    ]


def _decontamination(m: dict) -> list[str]:
    if "decontamination" not in m:
        return ["", "Decontamination: not recorded in the manifest (prepared without it)."]
    d = m["decontamination"] or {}
    if not d.get("enabled"):
        return ["", "Decontamination: off."]
    if not d.get("checked"):
        return ["", f"Decontamination: nothing checked (no benchmark files found in {d.get('data_dir')})."]
    rows = [[name, f"{b.get('documents_removed', 0):,}"] for name, b in d.get("benchmarks", {}).items()]
    return [
        "",
        f"Decontamination removed {d.get('documents_removed', 0):,} of {d.get('documents_checked', 0):,} "
        f"documents sharing a word {d.get('ngram')}-gram with a benchmark test item:",
        "",
        *_table(["benchmark", "documents removed"], rows),
    ]


def _split(m: dict) -> list[str]:
    s = m.get("split") or {}
    train, val = s.get("train"), s.get("val")
    if not train or not val:
        return []
    return [
        "",
        f"Split: train {train.get('num_documents', 0):,} documents / {train.get('num_tokens', 0):,} tokens, "
        f"validation {val.get('num_documents', 0):,} documents / {val.get('num_tokens', 0):,} tokens.",
    ]


def _tokenizer(facts: CardFacts) -> list[str]:
    r = facts.tokenizer_report or {}
    pattern = f", {r['pattern']} pre-tokenization pattern" if r.get("pattern") else ""
    lines = [
        "## Tokenizer",
        "",
        f"Byte-level BPE, {facts.config.vocab_size:,} tokens{pattern}, trained by `lit-llm tokenizer train`; "
        "`<|endoftext|>` ends every document, `<|pad|>` pads; no token is added to a prompt.",
    ]
    if r.get("bytes_per_token"):
        lines[-1] += f" {r['bytes_per_token']:.2f} bytes per token on held-out text."
    if r.get("sha256"):
        lines[-1] += f" tokenizer.json sha256 `{r['sha256'][:16]}`."
    return lines


def _evaluation(facts: CardFacts) -> list[str]:
    if not facts.benchmarks:
        return ["## Evaluation", "", "No benchmark scores recorded (`lit-llm evaluate --ckpt_path RUN`)."]
    rows = []
    for key, value in sorted(facts.benchmarks.items()):
        task, _, metric = key.partition("/")
        rows.append([task, metric, f"{value:.4f}"])
    return [
        "## Evaluation",
        "",
        f"From {facts.benchmark_source}:",
        "",
        *_table(["task", "metric", "value"], rows),
    ]


def _limits(facts: CardFacts) -> list[str]:
    return [
        "## Intended use and limits",
        "",
        "- A research and teaching artifact: a base model for studying pre-training, evaluation and "
        "fine-tuning, not a product or an assistant.",
        "- It continues text in the style of its training data; it follows no instructions and has no "
        "safety training. It states falsehoods fluently and can reproduce biases and text of its sources.",
        f"- Its context is {facts.config.max_seq_len} tokens, and it knows only what the data above holds.",
        "- Decontamination, where run, covers only the benchmarks listed; scores on other test sets may be "
        "inflated by overlap with the training data.",
    ]
