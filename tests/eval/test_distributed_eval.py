"""Data-parallel evaluation: two ranks share the requests and rank 0 gets the one-process scores.

The fast test forks two gloo ranks of the test process (no re-imports). The real DDP fit with
the callback (`lit-llm fit --trainer.strategy ddp --trainer.devices 2`) takes about a minute
on a loaded 2-core machine, so it runs when LIT_LLM_SLOW_TESTS=1.
"""

from __future__ import annotations

import datetime
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from lit_llm.eval.config import EvalConfig
from lit_llm.eval.runner import run_tasks
from lit_llm.eval.wrapper import LitLLMEval
from tests.eval.fixtures import callback_config, tiny_fit_args
from tests.helpers import read_metrics, run_ranks

ROOT = Path(__file__).resolve().parents[2]
TASKS = ["mmlu_anatomy", "perplexity", "gsm8k"]
LIMIT = 3  # over 2 ranks: uneven shards, so lm-eval pads one rank's requests


class StrategyLike:
    """The part of a Lightning Strategy the wrapper uses; all_gather stacks like Lightning's."""

    def __init__(self) -> None:
        self.global_rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor)
        return torch.stack(parts)

    def barrier(self, name: str | None = None) -> None:
        dist.barrier()


def _rank(rank: int, init: str, gpt, tokenizer, data_dir: Path, out: Path) -> None:
    """One of two gloo ranks: the tasks through torch.distributed, then a Lightning-style strategy; each
    results dict (None off rank 0) pickled to OUT/rank{rank}.pkl."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=init, rank=rank, world_size=2, timeout=datetime.timedelta(seconds=60)
    )
    try:
        found = []
        for strategy in (None, StrategyLike()):
            lm = LitLLMEval(gpt, tokenizer, batch_size=2, max_gen_toks=8, strategy=strategy, progress=False)
            results = run_tasks(lm, EvalConfig(tasks=TASKS, limit=LIMIT, data_dir=data_dir, progress=False))
            found.append((rank, results["results"] if results else None))
        (out / f"rank{rank}.pkl").write_bytes(pickle.dumps(found))
    finally:
        dist.destroy_process_group()


def test_two_ranks_give_the_one_process_scores(gpt, tokenizer, eval_data, tmp_path):
    run_ranks(_rank, (f"file://{tmp_path}/pg", gpt, tokenizer, eval_data, tmp_path))
    outputs = [o for r in range(2) for o in pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes())]
    expected = run_tasks(
        LitLLMEval(gpt, tokenizer, batch_size=2, max_gen_toks=8, progress=False),
        EvalConfig(tasks=TASKS, limit=LIMIT, data_dir=eval_data, progress=False),
    )["results"]
    rank0 = [results for rank, results in outputs if rank == 0]
    assert len(rank0) == 2 and all(results is None for rank, results in outputs if rank == 1)
    for results in rank0:
        for task in TASKS:
            assert results[task]["sample_len"] == LIMIT
            for metric, value in expected[task].items():
                if isinstance(value, float):
                    assert results[task][metric] == pytest.approx(value, rel=1e-5), (task, metric)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("LIT_LLM_SLOW_TESTS") != "1", reason="a two-process fit: set LIT_LLM_SLOW_TESTS=1"
)
def test_callback_under_ddp_fit_logs_the_one_process_scores(text_folder, eval_data, tmp_path):
    tasks = "mmlu_anatomy,perplexity"
    config = callback_config(
        tmp_path / "callbacks.yaml", eval_data, tasks=tasks, every_n_steps=0, limit=LIMIT
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = [
        "fit",
        *tiny_fit_args(),
        "--data.path",
        str(text_folder / "data"),
        "--trainer.max_steps",
        "1",
        "--trainer.val_check_interval",
        "100",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        "--trainer.default_root_dir",
        str(tmp_path / "run"),
        "--config",
        str(config),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "lit_llm.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (logged,) = [r for r in read_metrics(tmp_path / "run") if r.get("eval/perplexity/bits_per_byte")]
    assert int(logged["step"]) == 1
    lm = LitLLMEval(pretrained=str(tmp_path / "run"), batch_size=4, max_gen_toks=8, progress=False)
    results = run_tasks(lm, EvalConfig(tasks=tasks, limit=LIMIT, data_dir=eval_data, progress=False))[
        "results"
    ]
    assert results["perplexity"]["bits_per_byte,none"] == pytest.approx(
        float(logged["eval/perplexity/bits_per_byte"]), rel=1e-5
    )
    assert results["mmlu_anatomy"]["acc,none"] == pytest.approx(float(logged["eval/mmlu_anatomy/acc"]))
