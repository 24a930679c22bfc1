"""Run lm-eval tasks on a model wrapper: the one code path of `lit-llm evaluate` and `BenchmarkEval`.

    from lit_llm.eval.runner import run_tasks, flat_metrics
    config = EvalConfig(tasks="mmlu,perplexity", limit=20, data_dir="../shared/data")
    results = run_tasks(lm, config)
    flat_metrics(results, config.tasks)   # {"eval/mmlu/acc": 0.25, "eval/perplexity/bits_per_byte": ...}

`EvalConfig` checks the names and the code-execution opt-in, `prepare` the data files, before any
work; `run_tasks` then calls `lm_eval.evaluator.evaluate` with the same seeds and few-shot settings
as `simple_evaluate` (random 0, numpy 1234, torch 1234, few-shot 1234), inside `isolate_rng()`, so
the caller's random state is the same afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
from collections.abc import Iterator

import numpy as np
import torch
from lightning.pytorch.utilities.seed import isolate_rng

from lit_llm.errors import UserError
from lit_llm.eval.config import EvalConfig
from lit_llm.eval.tasks import check_data, check_task_names, task_manager


def prepare(config: EvalConfig):
    """Check the local tasks' files (or the hub tasks' names) and return the TaskManager to load them with."""
    manager = task_manager(config.data_dir, config.text_file, config.task_source)
    if config.task_source == "local":
        check_data(config.tasks, config.data_dir, config.text_file)
    else:
        check_task_names(config.tasks, config.task_source, manager)
    return manager


def run_tasks(
    lm,
    config: EvalConfig,
    *,
    manager=None,
    bootstrap_iters: int = 0,
    log_samples: bool = False,
    fewshot_seed: int = 1234,
) -> dict | None:
    """lm-eval's results dict (rank 0; None on other ranks) for the config's tasks and groups."""
    from lm_eval.evaluator import evaluate

    if manager is None:
        manager = prepare(config)
    with isolate_rng(), _quiet(config.progress):
        random.seed(0)
        np.random.seed(1234)
        torch.manual_seed(1234)
        loaded = _load_tasks(manager, config, fewshot_seed)
        try:
            return evaluate(
                lm=lm,
                task_dict=loaded,
                limit=config.limit,
                bootstrap_iters=bootstrap_iters,
                log_samples=log_samples,
                confirm_run_unsafe_code=config.allow_code_execution,
            )
        except ValueError as err:
            if "unsafe" in str(err):
                raise UserError(f"{err} (lit-llm: pass --allow_code_execution)") from None
            raise


def _load_tasks(manager, config: EvalConfig, fewshot_seed: int) -> dict:
    """The config's tasks, loaded, with their few-shot count (the config's, else their own, else 0) and seed."""
    try:
        loaded = manager.load(config.tasks)
    except ConnectionError as err:  # a stock task whose data set is not in the local cache
        raise UserError(
            f"{err}; lm-eval's stock tasks download their data (network, HF_HUB_OFFLINE unset), "
            "or use the local tasks (--task_source local)"
        ) from None
    for task in loaded["tasks"].values():
        if config.num_fewshot is not None and task.get_config("num_fewshot") != 0:
            task.set_config(key="num_fewshot", value=config.num_fewshot)
        elif task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=fewshot_seed)
    return loaded


def flat_metrics(
    results: dict, names: list[str], prefix: str = "eval", subtasks: bool = False
) -> dict[str, float]:
    """{"eval/<task>/<metric>": value} for the requested names and their direct subgroups (or every task).

    A metric computed under a filter other than "none" is named `<metric>_<filter>`
    (`exact_match_strict-match`); standard errors are left out.
    """
    children = results.get("group_subtasks", {})
    keep = set(names) | {c for n in names for c in children.get(n, []) if c in children}
    out = {}
    for section in ("results", "groups"):
        for task, values in results.get(section, {}).items():
            if not subtasks and task not in keep:
                continue
            for key, value in values.items():
                metric, _, filter_name = key.partition(",")
                if not filter_name or "_stderr" in metric or not isinstance(value, int | float):
                    continue
                name = metric if filter_name == "none" else f"{metric}_{filter_name}"
                out[f"{prefix}/{task}/{name}"] = float(value)
    return out


class _DropCustomDatasetHint(logging.Filter):
    """lm-eval warns once per task that custom datasets take --metadata; the kit passes it already."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed" not in record.getMessage()


@contextlib.contextmanager
def _quiet(progress: bool) -> Iterator[None]:
    """Silence lm-eval's per-task notices, and its per-task progress bars unless progress is on."""
    import lm_eval.api.task as task_module

    logger, hint = logging.getLogger("lm_eval.api.task"), _DropCustomDatasetHint()
    logger.addFilter(hint)
    original = task_module.tqdm
    if (
        not progress
    ):  # build_all_requests draws a bar per task with no switch; a module global is the only way
        task_module.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        logger.removeFilter(hint)
        task_module.tqdm = original


__all__ = ["prepare", "run_tasks", "flat_metrics"]
