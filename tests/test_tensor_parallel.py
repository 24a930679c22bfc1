"""Tensor parallelism and FSDP2 x TP on CPU (gloo, real processes): the same losses as one process, the
same batch within a tensor-parallel group, checkpoints that resume on another layout (resharding)."""

import json

import pytest

from lit_llm.errors import UserError
from lit_llm.model import ModelConfig
from lit_llm.parallel import check_tensor_parallel
from lit_llm.plan import Layout, memory_plan, meta_gpt
from tests.helpers import TINY, train_losses
from tests.test_distributed import QUIET, lit_llm, sample_log_config

pytestmark = pytest.mark.slow
TINY_CONFIG = ModelConfig(vocab_size=320, n_layer=2, n_head=2, d_model=32, max_seq_len=64)  # TINY on `data`


def layout(data_parallel: int, tensor_parallel: int) -> list[str]:
    return [
        "--trainer.devices",
        str(data_parallel * tensor_parallel),
        "--trainer.strategy.class_path",
        "lightning.pytorch.strategies.ModelParallelStrategy",
        "--trainer.strategy.init_args.data_parallel_size",
        str(data_parallel),
        "--trainer.strategy.init_args.tensor_parallel_size",
        str(tensor_parallel),
    ]


def samples(run, ranks: int) -> list[list[int]]:
    return [json.loads((run / "samples" / f"rank{r}.json").read_text()) for r in range(ranks)]


def test_fsdp2_x_tp2_continues_a_one_process_run_with_its_losses(data, tmp_path):
    """1 -> 4 processes: a one-process checkpoint continues on a 2 x 2 mesh (FSDP2 over data parallel, TP 2
    within) with the one-process losses and samples (global batch 4); each rank holds what
    `lit-llm plan` says. (TP 2 alone: tests/test_strategy.py, tests/test_spike_rollback.py.)"""
    common = ["fit", *TINY, *QUIET, "--data.path", str(data), "--trainer.max_steps", "6"]
    one, mesh = tmp_path / "one", tmp_path / "2x2"
    for run in (one, mesh):
        run.mkdir()
    log = ["--config", str(sample_log_config(one / "cb.json")), "--checkpoint.every_n_steps", "3"]
    lit_llm([*common, *log, "--trainer.default_root_dir", str(one)])
    start = one / "checkpoints" / "step-000003.ckpt"
    shard_bytes = ["--trainer.callbacks+=tests.helpers.ShardBytes", "--trainer.callbacks.out", str(tmp_path)]
    args = [*layout(2, 2), "--data.batch_size", "2", "--ckpt_path", str(start)]
    said = lit_llm(
        [
            *common,
            *args,
            "--config",
            str(sample_log_config(mesh / "cb.json")),
            *shard_bytes,
            "--trainer.default_root_dir",
            str(mesh),
        ]
    )
    alone, sharded = train_losses(one), train_losses(mesh)
    assert sorted(sharded) == [3, 4, 5]
    for step, loss in sharded.items():  # the same sums in another order: float32 rounding only
        assert abs(float(loss) - float(alone[step])) < 1e-4, (alone, sharded)
    ranks = samples(mesh, 4)
    assert ranks[0] == ranks[1] and ranks[2] == ranks[3] and not set(ranks[0]) & set(ranks[2])
    assert sorted(ranks[0] + ranks[2]) == sorted(samples(one, 1)[0][3 * 4 :])  # steps 3-5, 4 samples each
    # `lit-llm plan`'s weights, gradients and AdamW state per device = what each rank of the 2 x 2 mesh holds
    planned = memory_plan(meta_gpt(TINY_CONFIG), Layout(world_size=4, tensor_parallel=2, fsdp=True), 2, 32, 4)
    for rank in range(4):
        held = json.loads((tmp_path / f"bytes-rank{rank}.json").read_text())
        for part in ("weights", "gradients", "optimizer"):
            assert held[part] == pytest.approx(getattr(planned, part), rel=0.02), (rank, part, held, planned)
    out = said.stdout + said.stderr
    assert "global batch = 2 x 4 processes as 2 data-parallel groups of 2 tensor-parallel ranks" in out
    assert "data-parallel groups: 1 then, 2 now" in out


@pytest.mark.parametrize(
    "field, sizes",
    [
        ("n_head", dict(n_head=6, n_kv_head=6, d_model=96)),
        ("n_kv_head", dict(n_head=4, n_kv_head=2, d_model=64)),
        ("ffn_hidden", dict(n_head=4, n_kv_head=4, d_model=64, ffn_hidden=130)),
    ],
)
def test_a_model_that_does_not_split_over_the_tensor_parallel_ranks_is_refused_in_one_line(field, sizes):
    with pytest.raises(UserError, match=rf"model.arch.{field}=\d+ does not divide by tensor_parallel_size=4"):
        check_tensor_parallel(ModelConfig(**sizes), 4)
