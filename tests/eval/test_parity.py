"""Same task, same scores: the kit's wrapper vs lm-eval's own `hf` backend on the exported Llama."""

from __future__ import annotations

import pytest
import torch

from lit_llm.eval.config import EvalConfig
from lit_llm.eval.runner import run_tasks
from lit_llm.eval.wrapper import LitLLMEval
from lit_llm.hf import save_hf
from tests.eval.fixtures import tiny_gpt


@pytest.fixture(scope="module")
def exported(tokenizer, text_folder, tmp_path_factory):
    """A tiny GPT with a 320-token context and its Hugging Face export (model + tokenizer) loaded back."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gpt = tiny_gpt(tokenizer.vocab_size, max_seq_len=320, seed=1)
    folder = save_hf(
        gpt,
        tmp_path_factory.mktemp("hf") / "model",
        tokenizer_dir=text_folder / "tokenizer",
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
    )
    return gpt, AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


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
    gpt, llama, hf_tokenizer = exported
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


def test_generation_agrees_with_hf_backend(exported, tokenizer, eval_data):
    """GSM8K, 0-shot, greedy: the same text and the same exact-match scores."""
    gpt, llama, hf_tokenizer = exported
    config = EvalConfig(tasks="gsm8k", limit=2, num_fewshot=0, data_dir=eval_data, progress=False)
    ours = run_tasks(
        LitLLMEval(gpt, tokenizer, batch_size=1, max_gen_toks=24, progress=False), config, log_samples=True
    )
    with torch.no_grad():
        theirs = run_tasks(hf_backend(llama, hf_tokenizer, batch_size=1), config, log_samples=True)
    ours_text = [s["resps"] for s in ours["samples"]["gsm8k"]]
    theirs_text = [s["resps"] for s in theirs["samples"]["gsm8k"]]
    # HF generates up to 256 tokens; ours was capped at 24: compare the common prefix.
    for (a,), (b,) in zip(ours_text, theirs_text):
        assert a[0] and b[0].startswith(a[0])
