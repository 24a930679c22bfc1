"""The kit's local lm-eval tasks: MMLU, GSM8K, HumanEval and a perplexity task over local files.

The YAML files here follow lm-eval's stock task setups but read local files (see `utils.py`
for the layout under `data_dir`). Use them through `lit-llm evaluate`, the `BenchmarkEval`
callback, or lm-eval itself:

    from lit_llm.eval.tasks import task_manager
    tm = task_manager(data_dir="../shared/data")            # lm_eval.tasks.TaskManager
    lm_eval.simple_evaluate(model=lm, tasks=["gsm8k"], task_manager=tm, limit=10)

    lm-eval run --include_path $(python -c "import lit_llm.eval.tasks as t; print(t.TASK_DIR)") \
        --metadata '{"data_dir": "../shared/data"}' --tasks mmlu ...
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal

from lit_llm.errors import UserError
from lit_llm.eval.tasks.utils import (
    _CATEGORIES,
    MMLU_SUBJECTS,
    data_root,
    gsm8k_files,
    humaneval_file,
    load_humaneval,
    mmlu_files,
    require,
    text_file_path,
)

TASK_DIR = Path(__file__).resolve().parent
LOCAL_TASKS = ("mmlu", *(f"mmlu_{c}" for c in _CATEGORIES), "gsm8k", "humaneval", "perplexity")
UNSAFE_TASKS = ("humaneval",)  # tasks that execute model-generated code
TaskSource = Literal["local", "hub"]


def local_task_names() -> list[str]:
    """Every name the local tasks answer to: groups, benchmarks and the 57 `mmlu_<subject>` tasks."""
    return [*LOCAL_TASKS, *(f"mmlu_{s}" for s in sorted(MMLU_SUBJECTS))]


def task_manager(
    data_dir: str | Path | None = None, text_file: str | Path | None = None, source: TaskSource = "local"
):
    """An `lm_eval.tasks.TaskManager` for the local tasks (offline) or lm-eval's stock ones (Hub, online)."""
    from lm_eval.tasks import TaskManager

    metadata = {
        "data_dir": str(data_root(data_dir).resolve()),
        "text_file": str(Path(text_file).expanduser().resolve()) if text_file else None,
    }
    if source == "local":
        return TaskManager(include_path=str(TASK_DIR), include_defaults=False, metadata=metadata)
    if source == "hub":
        return TaskManager(metadata=metadata)
    raise UserError(f"unknown task source {source!r} (local or hub)")


def parse_tasks(tasks: str | list[str] | tuple[str, ...]) -> list[str]:
    """'mmlu,gsm8k' or a list -> a list of names without blanks or repeats."""
    items = (
        tasks.split(",") if isinstance(tasks, str) else [t for item in tasks for t in str(item).split(",")]
    )
    names = list(dict.fromkeys(t.strip() for t in items if t.strip()))
    if not names:
        raise UserError("no task given (for example --tasks mmlu,gsm8k,perplexity)")
    return names


def check_task_names(names: list[str], source: TaskSource = "local", manager=None) -> None:
    """Raise a UserError listing the available tasks when a name is unknown."""
    if source == "local":
        known = set(local_task_names())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UserError(
                f"unknown task {', '.join(map(repr, unknown))}; available: {', '.join(LOCAL_TASKS)}, "
                f"and mmlu_<subject> for the {len(MMLU_SUBJECTS)} MMLU subjects (e.g. mmlu_anatomy); "
                "lm-eval's stock tasks need --task_source hub"
            )
        return
    manager = manager or task_manager(source=source)
    known = set(manager.all_tasks)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=5)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UserError(f"unknown lm-eval task {name!r}{hint}; `lm-eval ls tasks` lists all {len(known)}")


def check_code_execution(names: list[str], allow_code_execution: bool) -> None:
    """Refuse tasks that run model-written code unless the caller opted in."""
    unsafe = [n for n in names if n in UNSAFE_TASKS]
    if unsafe and not allow_code_execution:
        raise UserError(
            f"{', '.join(unsafe)} executes code written by the model (untrusted: it runs in a separate "
            "process with a timeout and resource limits, but not in a full sandbox); pass "
            "--allow_code_execution (BenchmarkEval(allow_code_execution=True)) to confirm"
        )


def _mmlu_subjects(name: str) -> list[str]:
    if name == "mmlu":
        return sorted(MMLU_SUBJECTS)
    category = name.removeprefix("mmlu_").removesuffix("_tasks")
    if category in _CATEGORIES:
        return sorted(s for s, c in MMLU_SUBJECTS.items() if c == category)
    return [category] if category in MMLU_SUBJECTS else []


def check_data(
    names: list[str], data_dir: str | Path | None = None, text_file: str | Path | None = None
) -> None:
    """Fail before any work when a local task's files are missing (the error names the path and the flag)."""
    for name in names:
        if name.startswith("mmlu"):
            for subject in _mmlu_subjects(name):
                for path in mmlu_files(subject, data_dir).values():
                    require(path, f"MMLU {subject}")
        elif name == "gsm8k":
            for path in gsm8k_files(data_dir).values():
                require(path, "GSM8K")
        elif name == "humaneval" and not humaneval_file(data_dir).is_file():
            load_humaneval(data_dir)  # raises the error with the hint
        elif name == "perplexity":
            path = text_file_path(data_dir, text_file)
            if not path.is_file():
                raise UserError(
                    f"{path}: text file for the perplexity task not found; pass --text_file FILE "
                    f"or --data_dir DIR (with wikitext2/test.txt)"
                )


__all__ = [
    "TASK_DIR",
    "LOCAL_TASKS",
    "task_manager",
    "local_task_names",
    "parse_tasks",
    "check_task_names",
    "check_code_execution",
    "check_data",
]
