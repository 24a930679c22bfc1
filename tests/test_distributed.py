"""Real multi-process training on CPU (gloo): DDP parity, FSDP2 sharded checkpoints, a two-node torchrun launch."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import TINY, read_metrics, run_ranks, train_losses

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.val_check_interval", "100", "--trainer.limit_val_batches", "2"]
pytestmark = pytest.mark.slow


def lit_llm(
    args: list[str], launcher: list[str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = launcher or [sys.executable, "-m", "lit_llm.cli"]
    proc = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def sample_log_config(path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "trainer": {
                    "callbacks": [
                        {
                            "class_path": "tests.killer.RecordSamples",
                            "init_args": {"path": str(path.parent / "samples")},
                        }
                    ]
                }
            }
        )
    )
    return path


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(data, tmp_path):
    common = ["fit", *TINY, *QUIET, "--data.path", str(data), "--trainer.max_steps", "5"]
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    lit_llm(
        [
            *common,
            "--data.batch_size",
            "4",
            "--trainer.default_root_dir",
            str(tmp_path / "one"),
            "--config",
            str(sample_log_config(tmp_path / "one" / "cb.json")),
        ]
    )
    lit_llm(
        [
            *common,
            "--data.batch_size",
            "2",
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp",
            "--trainer.default_root_dir",
            str(tmp_path / "two"),
            "--config",
            str(sample_log_config(tmp_path / "two" / "cb.json")),
        ]
    )
    one, two = train_losses(tmp_path / "one"), train_losses(tmp_path / "two")
    assert sorted(one) == sorted(two) == list(range(5))
    for step in one:  # same samples, gradients averaged over the same 4 rows; float sums differ in order only
        assert abs(float(one[step]) - float(two[step])) < 1e-4, (step, one, two)
    ranks = [json.loads((tmp_path / "two" / "samples" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == sorted(
        json.loads((tmp_path / "one" / "samples" / "rank0.json").read_text())
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_node_torchrun_launch_on_loopback(data, tmp_path):
    port = free_port()
    args = [
        "fit",
        *TINY,
        *QUIET,
        "--data.path",
        str(data),
        "--data.batch_size",
        "2",
        "--trainer.max_steps",
        "3",
        "--trainer.num_nodes",
        "2",
        "--trainer.devices",
        "1",
        "--trainer.strategy",
        "ddp",
        "--trainer.default_root_dir",
        str(tmp_path / "run"),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    agents = []
    for node in (0, 1):
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "2",
            "--nproc_per_node",
            "1",
            "--node_rank",
            str(node),
            "--rdzv_backend",
            "c10d",
            "--rdzv_endpoint",
            f"127.0.0.1:{port}",
            "--rdzv_id",
            "litllm-test",
            "-m",
            "lit_llm.cli",
            *args,
        ]
        agents.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    results = [a.communicate(timeout=300) for a in agents]
    for agent, (_, err) in zip(agents, results):
        assert agent.returncode == 0, err[-4000:]
    assert max(train_losses(tmp_path / "run")) == 2


def test_benchmark_eval_scores_the_gathered_model_of_a_model_parallel_run(data, tmp_path):
    """ModelParallelStrategy on two devices of one node: tensor parallel 2 (Lightning's default layout)."""
    text = tmp_path / "held_out.txt"
    text.write_text("To be, or not to be, that is the question.\n\n" * 20)
    callback = {
        "class_path": "lit_llm.callbacks.BenchmarkEval",
        "init_args": {
            "tasks": "perplexity",
            "text_file": str(text),
            "every_n_steps": 2,
            "limit": 2,
            "at_fit_end": False,
            "progress": False,
        },
    }
    (tmp_path / "cb.json").write_text(json.dumps({"trainer": {"callbacks": [callback]}}))
    run = tmp_path / "run"
    lit_llm(
        [
            "fit",
            *TINY,
            *QUIET,
            "--data.path",
            str(data),
            "--data.batch_size",
            "2",
            "--trainer.max_steps",
            "4",
            "--trainer.devices",
            "2",
            "--trainer.strategy.class_path",
            "lightning.pytorch.strategies.ModelParallelStrategy",
            "--trainer.default_root_dir",
            str(run),
            "--config",
            str(tmp_path / "cb.json"),
        ]
    )
    rows = read_metrics(run)
    bpb = [float(r["eval/perplexity/bits_per_byte"]) for r in rows if r.get("eval/perplexity/bits_per_byte")]
    assert len(bpb) == 2 and all(0 < b < 20 for b in bpb)


def _fail_or_wait(rank: int, out: str) -> None:
    """Rank 1 fails; rank 0 waits as in a collective whose peer is gone."""
    Path(out, f"pid{rank}.tmp").write_text(str(os.getpid()))
    os.replace(Path(out, f"pid{rank}.tmp"), Path(out, f"pid{rank}"))  # whole when seen
    if rank == 1:
        while not Path(out, "pid0").exists():
            time.sleep(0.01)
        raise RuntimeError("rank 1 fails")
    time.sleep(60)


def test_run_ranks_fails_at_once_and_ends_the_rank_left_waiting(tmp_path):
    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"rank exit codes \[None, 1\]"):
        run_ranks(_fail_or_wait, (str(tmp_path),))
    assert time.monotonic() - start < 30
    with pytest.raises(ProcessLookupError):  # ended and reaped
        os.kill(int((tmp_path / "pid0").read_text()), 0)
