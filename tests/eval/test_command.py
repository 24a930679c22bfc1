"""`lit-llm evaluate` and lm-eval's own CLI on a trained checkpoint; the real data when ../shared/data exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lit_llm.cli import main
from tests.helpers import read_metrics

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"


def evaluate(*args: str) -> None:
    main(["evaluate", "--progress", "false", "--bootstrap_iters", "0", *args])


def test_evaluate_writes_results_json_and_prints_the_table(runs, eval_data, tmp_path, capsys):
    """Same numbers as the callback logged in the loop for the same weights (step 6)."""
    out = tmp_path / "results.json"
    evaluate(
        "--ckpt_path",
        str(runs[1]),
        "--tasks",
        "mmlu_anatomy,gsm8k,perplexity,humaneval",
        "--limit",
        "2",
        "--data_dir",
        str(eval_data),
        "--allow_code_execution",
        "true",
        "--max_gen_toks",
        "8",
        "--batch_size",
        "4",
        "--output",
        str(out),
    )
    printed = capsys.readouterr().out
    assert "|perplexity|" in printed and "bits_per_byte" in printed and f"wrote {out}" in printed
    results = json.loads(out.read_text())
    assert set(results["results"]) == {"mmlu_anatomy", "gsm8k", "perplexity", "humaneval"}
    assert results["results"]["humaneval"]["pass@1,none"] == 0.0  # an untrained model writes no working code
    assert (
        results["config"]["ckpt_path"].endswith("last.ckpt")
        and results["n-samples"]["gsm8k"]["effective"] == 2
    )
    in_loop = [r for r in read_metrics(runs[1]) if r.get("eval/perplexity/bits_per_byte")][-1]
    assert results["results"]["perplexity"]["bits_per_byte,none"] == pytest.approx(
        float(in_loop["eval/perplexity/bits_per_byte"]), rel=1e-5
    )
    assert results["results"]["mmlu_anatomy"]["acc,none"] == float(in_loop["eval/mmlu_anatomy/acc"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tasks", "mmlu,gsm8kk"], "unknown task 'gsm8kk'; available: mmlu,"),
        (["--tasks", "humaneval"], "--allow_code_execution"),
        (["--limit", "0"], "limit must be >= 1 or None, got 0"),
        (
            ["--tasks", "gsm8k", "--data_dir", "/nonexistent"],
            "/nonexistent/gsm8k/train.jsonl: GSM8K data file not found",
        ),
    ],
)
def test_bad_input_is_one_line(runs, eval_data, args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate("--ckpt_path", str(runs[0]), "--data_dir", str(eval_data), *args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("lit-llm: error:")


def test_help_lists_every_option_with_its_help(capsys):
    """The command's own options and every EvalConfig field, each with its docstring."""
    import inspect

    from lit_llm.command_options import field_docs
    from lit_llm.eval.command import evaluate_command
    from lit_llm.eval.config import EvalConfig

    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--help"])
    assert exit_info.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    for name in inspect.signature(evaluate_command).parameters:
        assert f"--{name} " in shown, name
    for name, doc in field_docs(EvalConfig).items():
        assert doc and " ".join(doc.split()[:4]) in shown, name


def test_lm_eval_builds_the_registered_model_from_arguments(runs, eval_data):
    """What `lm-eval --model lit-llm --model_args ckpt_path=RUN` does (`python -m lit_llm.eval ...`)."""
    import lm_eval

    import lit_llm.eval.wrapper  # noqa: F401  (registers "lit-llm")
    from lit_llm.eval.tasks import task_manager

    results = lm_eval.simple_evaluate(
        model="lit-llm",
        model_args=f"ckpt_path={runs[0]},progress=False",
        batch_size=4,
        device="cpu",
        tasks=["mmlu_anatomy"],
        limit=2,
        task_manager=task_manager(eval_data),
        bootstrap_iters=0,
        log_samples=False,
    )
    assert results["results"]["mmlu_anatomy"]["sample_len"] == 2
    assert results["config"]["model"] == "lit-llm" and results["config"]["model_num_parameters"] > 0


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real benchmark data not found at {SHARED_DATA}")
def test_real_benchmarks_run_offline(runs, tmp_path):
    out = tmp_path / "real.json"
    evaluate(
        "--ckpt_path",
        str(runs[0]),
        "--tasks",
        "mmlu_anatomy,gsm8k,humaneval,perplexity",
        "--limit",
        "1",
        "--data_dir",
        str(SHARED_DATA),
        "--allow_code_execution",
        "true",
        "--max_gen_toks",
        "16",
        "--output",
        str(out),
    )
    results = json.loads(out.read_text())["results"]
    assert results["perplexity"]["bits_per_byte,none"] > 0 and "acc,none" in results["mmlu_anatomy"]
    assert "pass@1,none" in results["humaneval"] and "exact_match,strict-match" in results["gsm8k"]
