"""Same task, same scores: the kit's wrapper vs lm-eval's own `hf` backend on the exported Llama."""

from __future__ import annotations

import pytest

from lit_llm.eval.config import EvalConfig
from lit_llm.eval.runner import run_tasks
from lit_llm.eval.wrapper import LitLLMEval
from lit_llm.hf import save_hf
from tests.eval.fixtures import tiny_gpt


@pytest.fixture(scope="module")
def exported(tokenizer, text_folder, tmp_path_factory):
    """A tiny GPT with a 320-token context (longer than GSM8K's 256 generated tokens), its Hugging Face
    export (model + tokenizer) loaded back, and the export folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gpt = tiny_gpt(tokenizer.vocab_size, max_seq_len=320, seed=1)
    folder = save_hf(
        gpt,
        tmp_path_factory.mktemp("hf") / "model",
        tokenizer_dir=text_folder / "tokenizer",
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
    )
    llama, hf_tokenizer = (
        AutoModelForCausalLM.from_pretrained(folder).eval(),
        AutoTokenizer.from_pretrained(folder),
    )
    return gpt, llama, hf_tokenizer, folder


def hf_backend(llama, hf_tokenizer, **kwargs):
    """lm-eval's `hf` backend without its logits cache: the cache serves requests whose context +
    continuation[:-1] are equal from one forward pass, and when their continuations differ in length
    (a repetitive text's last rolling window and an earlier one) it scores the shorter one on the
    wrong positions. The kit's wrapper shares the pass too but slices each continuation's own
    positions, so both agree with the uncached backend."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=llama, tokenizer=hf_tokenizer, logits_cache=False, **kwargs)


def responses(results: dict) -> dict[str, list]:
    return {task: [s["filtered_resps"] for s in rows] for task, rows in results["samples"].items()}


def test_loglikelihood_tasks_agree_with_hf_backend(exported, tokenizer, eval_data):
    """Multiple choice (5-shot MMLU, contexts cut to 64 tokens) and rolling windows of 64 tokens."""
    gpt, llama, hf_tokenizer, _ = exported
    tasks = ["mmlu_anatomy", "mmlu_virology", "perplexity"]
    config = EvalConfig(tasks=tasks, limit=3, data_dir=eval_data, progress=False)
    ours = run_tasks(
        LitLLMEval(gpt, tokenizer, batch_size=4, max_length=64, progress=False), config, log_samples=True
    )
    theirs = run_tasks(hf_backend(llama, hf_tokenizer, batch_size=4, max_length=64), config, log_samples=True)
    for task in tasks:
        ours_resps, theirs_resps = responses(ours)[task], responses(theirs)[task]
        assert len(ours_resps) == 3
        for a, b in zip(ours_resps, theirs_resps):
            flat_a = [x if isinstance(x, float) else x[0] for x in a]
            flat_b = [x if isinstance(x, float) else x[0] for x in b]
            assert flat_a == pytest.approx(flat_b, rel=1e-4, abs=1e-4)
        for metric, value in theirs["results"][task].items():
            if isinstance(value, float):
                assert ours["results"][task][metric] == pytest.approx(value, rel=1e-4), (task, metric)


def test_gsm8k_defaults_run_in_hf_backend_as_in_the_wrapper(exported, tokenizer, eval_data):
    """lm-eval's `hf` backend on the export folder, as a user runs it (simple_evaluate, the kit's task
    folder, no generation flags): 5-shot GSM8K completes, with the wrapper's text and scores."""
    import lm_eval

    from lit_llm.eval.tasks import task_manager

    gpt, folder = exported[0], exported[3]
    theirs = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={folder},batch_size=1,device=cpu",
        tasks=["gsm8k"],
        task_manager=task_manager(eval_data),
        limit=2,
        log_samples=True,
    )
    config = EvalConfig(tasks="gsm8k", limit=2, data_dir=eval_data, progress=False)
    ours = run_tasks(LitLLMEval(gpt, tokenizer, batch_size=1, progress=False), config, log_samples=True)
    ours_text = [s["resps"] for s in ours["samples"]["gsm8k"]]
    assert ours_text == [s["resps"] for s in theirs["samples"]["gsm8k"]]
    assert all(len(tokenizer.encode(text)) > 24 for ((text,),) in ours_text)  # well past a short cap
    for metric in ("exact_match,strict-match", "exact_match,flexible-extract"):
        assert ours["results"]["gsm8k"][metric] == theirs["results"]["gsm8k"][metric]
