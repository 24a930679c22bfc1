"""Tensor parallelism and FSDP2 x TP on CPU (gloo, real processes): the same losses as one process, the
same batch within a tensor-parallel group, checkpoints that resume on another layout (resharding)."""

import json

import pytest

from lit_llm.checkpoint import load_gpt
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


def test_tp2_and_fsdp2_x_tp2_continue_a_one_process_run_with_its_losses(data, tmp_path):
    """1 -> 2 and 1 -> 4 processes: a one-process checkpoint continues under TP 2 and under a 2 x 2 mesh
    (FSDP2 over data parallel, TP within) with the losses of the one-process run, global batch 4."""
    common = ["fit", *TINY, *QUIET, "--data.path", str(data), "--trainer.max_steps"]
    start = tmp_path / "start"
    lit_llm([*common, "3", "--trainer.default_root_dir", str(start)])
    shard_bytes = ["--trainer.callbacks+=tests.helpers.ShardBytes", "--trainer.callbacks.out", str(tmp_path)]
    runs = {"one": [], "tp2": layout(1, 2), "2x2": [*layout(2, 2), "--data.batch_size", "2"]}
    logs = {}
    for name, strategy in runs.items():
        (tmp_path / name).mkdir()
        log = sample_log_config(tmp_path / name / "cb.json")
        args = ["6", "--ckpt_path", str(start / "checkpoints" / "last.ckpt"), *strategy, "--config", str(log)]
        more = shard_bytes if name == "2x2" else []
        logs[name] = lit_llm([*common, *args, *more, "--trainer.default_root_dir", str(tmp_path / name)])
    losses = {name: train_losses(tmp_path / name) for name in runs}
    assert sorted(losses["one"]) == [3, 4, 5]
    for name in ("tp2", "2x2"):  # the same sums in another order: float32 rounding only
        for step, loss in losses["one"].items():
            assert abs(float(losses[name][step]) - float(loss)) < 1e-4, (name, losses)
    one = samples(tmp_path / "one", 1)[0]
    tp2, mesh = samples(tmp_path / "tp2", 2), samples(tmp_path / "2x2", 4)
    assert tp2[0] == tp2[1] == one  # a tensor-parallel group shares its batches
    assert mesh[0] == mesh[1] and mesh[2] == mesh[3] and not set(mesh[0]) & set(mesh[2])
    assert sorted(mesh[0] + mesh[2]) == sorted(one)
    # `lit-llm plan`'s weights, gradients and AdamW state per device = what each rank of the 2 x 2 mesh holds
    planned = memory_plan(meta_gpt(TINY_CONFIG), Layout(world_size=4, tensor_parallel=2, fsdp=True), 2, 32, 4)
    for rank in range(4):
        held = json.loads((tmp_path / f"bytes-rank{rank}.json").read_text())
        for part in ("weights", "gradients", "optimizer"):
            assert held[part] == pytest.approx(getattr(planned, part), rel=0.02), (rank, part, held, planned)
    said = logs["2x2"].stdout + logs["2x2"].stderr
    assert "global batch = 2 x 4 processes as 2 data-parallel groups of 2 tensor-parallel ranks" in said


def test_fsdp2_checkpoint_resumes_as_tp2_and_on_one_process_and_a_tp_run_exports(data, tmp_path):
    """2 -> TP 2 and 2 -> 1: an FSDP2 checkpoint continues under tensor parallelism and (converted) on one
    process with equal losses; the TP run's own sharded checkpoint converts and exports."""
    common = ["fit", *TINY, *QUIET, "--data.path", str(data)]
    fsdp = tmp_path / "fsdp"
    shard_rows = ["--trainer.callbacks+=tests.helpers.ShardRows", "--trainer.callbacks.out", str(tmp_path)]
    lit_llm(
        [
            *common,
            *layout(2, 1),
            "--data.batch_size",
            "2",
            "--trainer.max_steps",
            "4",
            *shard_rows,
            "--trainer.default_root_dir",
            str(fsdp),
        ]
    )
    assert [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)] == [0.5, 0.5]
    saved = fsdp / "checkpoints" / "last.ckpt"
    assert saved.is_dir() and len(list(saved.glob("*.distcp"))) == 2
    resume = ["--trainer.max_steps", "7", "--data.batch_size", "4"]
    tp = tmp_path / "tp"
    resumed = lit_llm(
        [*common, *resume, *layout(1, 2), "--ckpt_path", str(saved), "--trainer.default_root_dir", str(tp)]
    )
    assert "data-parallel groups: 2 then, 1 now" in resumed.stdout + resumed.stderr
    lit_llm(["checkpoint", "convert", "--ckpt_path", str(saved), "--out", str(tmp_path / "fsdp.ckpt")])
    one = tmp_path / "one"
    lit_llm(
        [*common, *resume, "--ckpt_path", str(tmp_path / "fsdp.ckpt"), "--trainer.default_root_dir", str(one)]
    )
    tp_losses, one_losses = train_losses(tp), train_losses(one)
    assert sorted(tp_losses) == sorted(one_losses) == [4, 5, 6]
    for step, loss in one_losses.items():
        assert abs(float(tp_losses[step]) - float(loss)) < 1e-4, (tp_losses, one_losses)
    assert load_gpt(tp)[1].global_step == 7  # a TP run's sharded folder reads as one model
    lit_llm(["checkpoint", "convert", "--ckpt_path", str(tp), "--out", str(tmp_path / "tp.ckpt")])
    lit_llm(["export", "--ckpt_path", str(tmp_path / "tp.ckpt"), "--out", str(tmp_path / "hf")])
    assert (tmp_path / "hf" / "model.safetensors").exists()


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
