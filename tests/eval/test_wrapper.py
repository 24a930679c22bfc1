"""The lm-eval wrapper's numbers against a direct computation with the GPT (no lm-eval in the reference)."""

from __future__ import annotations

import logging
import random

import pytest
import torch
from lm_eval.api.instance import Instance

from lit_llm.eval.wrapper import LitLLMEval
from tests.eval.fixtures import tiny_gpt


def requests(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def direct_loglikelihood(gpt, tokens: list[int], n_cont: int, max_length: int) -> tuple[float, bool]:
    """Sum of log p(continuation token | everything before it), with the input cut to max_length."""
    window = tokens[-(max_length + 1) :]
    with torch.no_grad():
        logprobs = gpt(torch.tensor([window[:-1]]))[0].log_softmax(-1)  # (T, V)
    rows = logprobs[len(window) - 1 - n_cont :]
    targets = torch.tensor(window[-n_cont:])
    return float(rows.gather(1, targets[:, None]).sum()), bool((rows.argmax(-1) == targets).all())


def expected(gpt, tokenizer, context: str, continuation: str, max_length: int = 64) -> tuple[float, bool]:
    """lm-eval's split: trailing spaces of the context belong to the continuation; tokens of the whole."""
    context, continuation = context.rstrip(), context[len(context.rstrip()) :] + continuation
    whole, ctx = tokenizer.encode(context + continuation), tokenizer.encode(context)
    return direct_loglikelihood(gpt, whole, len(whole) - len(ctx), max_length)


CONTEXTS = [
    "The quick brown fox",
    "A stitch in time saves",
    "To be, or not to be, that is the",
    "def add(a, b):\n   ",
]
CONTINUATIONS = [" jumps over the lazy dog.", " nine", " A", " B", " question", " return a + b"]


def test_loglikelihood_matches_direct_computation(gpt, tokenizer):
    pairs = [(c, k) for c in CONTEXTS for k in CONTINUATIONS]  # one-token continuations share a context
    got = LitLLMEval(gpt, tokenizer, batch_size=5, progress=False).loglikelihood(
        requests("loglikelihood", pairs)
    )
    for (context, continuation), (logprob, greedy) in zip(pairs, got):
        reference, reference_greedy = expected(gpt, tokenizer, context, continuation)
        assert logprob == pytest.approx(reference, abs=1e-4)
        assert greedy == reference_greedy


def test_batching_and_truncation_do_not_change_scores(gpt, tokenizer):
    long_context = "The lazy dog sleeps. " * 30  # far more than max_length tokens: cut from the left
    pairs = [(long_context, " The fox"), *((c, " nine") for c in CONTEXTS)]
    one = LitLLMEval(gpt, tokenizer, batch_size=1, progress=False).loglikelihood(
        requests("loglikelihood", pairs)
    )
    many = LitLLMEval(gpt, tokenizer, batch_size=8, progress=False).loglikelihood(
        requests("loglikelihood", pairs)
    )
    assert [g for _, g in one] == [g for _, g in many]
    assert [s for s, _ in one] == pytest.approx([s for s, _ in many], abs=1e-4)
    assert one[0][0] == pytest.approx(expected(gpt, tokenizer, long_context, " The fox")[0], abs=1e-4)


def test_rolling_loglikelihood_scores_every_token_once(gpt, tokenizer):
    text = "All that glitters is not gold. The quick brown fox jumps over the lazy dog. " * 6
    tokens = tokenizer.encode(text)
    L = 24
    assert len(tokens) > 3 * L
    lm = LitLLMEval(gpt, tokenizer, max_length=L, batch_size=3, progress=False)
    (got,) = lm.loglikelihood_rolling(requests("loglikelihood_rolling", [(text,)]))
    # Reference: the first L tokens after <|endoftext|>, then blocks of L tokens, each predicted
    # from the L tokens before its last position (disjoint predictions, overlapping inputs).
    expected = direct_loglikelihood(gpt, [tokenizer.eos_id, *tokens[:L]], L, L)[0]
    for start in range(L, len(tokens), L):
        end = min(start + L, len(tokens))
        expected += direct_loglikelihood(gpt, tokens[end - L - 1 : end], end - start, L)[0]
    assert got == pytest.approx(expected, rel=1e-5)
    empty = lm.loglikelihood_rolling(requests("loglikelihood_rolling", [("",)]))
    assert empty == [0.0]


def test_greedy_generation_matches_gpt_generate_and_stops(gpt, tokenizer):
    prompts = ["The quick brown fox", "To be, or not", "The quick brown dog"]
    lm = LitLLMEval(gpt, tokenizer, batch_size=4, progress=False)
    got = lm.generate_until(
        requests("generate_until", [(p, {"until": [], "max_gen_toks": 12}) for p in prompts])
    )
    for prompt, text in zip(prompts, got):
        ids = tokenizer.encode(prompt)
        out = gpt.generate(torch.tensor(ids), 12, temperature=0.0, stop_tokens=tokenizer.eos_id)[
            len(ids) :
        ].tolist()
        out = out[: out.index(tokenizer.eos_id)] if tokenizer.eos_id in out else out
        assert text == tokenizer.decode(out)
    # A stop string cuts the text before it (and ends the decoding of that row).
    stop = got[0][3:6]
    (cut,) = lm.generate_until(
        requests("generate_until", [(prompts[0], {"until": [stop], "max_gen_toks": 12})])
    )
    assert cut == got[0].split(stop)[0]


def test_sampling_is_seeded_and_leaves_global_rng_alone(gpt, tokenizer):
    args = [("The fox", {"until": ["\n\n"], "max_gen_toks": 10, "do_sample": True, "temperature": 1.0})] * 3
    torch.manual_seed(5)
    random.seed(5)
    state, py_state = torch.get_rng_state(), random.getstate()
    first = LitLLMEval(gpt, tokenizer, seed=3, progress=False).generate_until(
        requests("generate_until", args)
    )
    assert torch.equal(torch.get_rng_state(), state) and random.getstate() == py_state
    again = LitLLMEval(gpt, tokenizer, seed=3, progress=False).generate_until(
        requests("generate_until", args)
    )
    assert first == again and len(set(first)) > 1  # same seed, same samples; rows differ


def test_model_and_tokenizer_from_a_checkpoint_and_bad_arguments(tokenizer, tmp_path):
    from lit_llm.errors import UserError

    with pytest.raises(UserError, match="tokenizer"):
        LitLLMEval(tiny_gpt(tokenizer.vocab_size))
    with pytest.raises(UserError, match="tokenizer has"):
        LitLLMEval(tiny_gpt(tokenizer.vocab_size + 1), tokenizer)
    with pytest.raises(UserError, match="no checkpoint"):
        LitLLMEval(pretrained=str(tmp_path / "missing"))
    with pytest.raises(UserError, match="batch_size"):
        LitLLMEval(tiny_gpt(tokenizer.vocab_size), tokenizer, batch_size=0)


def test_windows_sharing_one_forward_pass_score_their_own_positions(gpt, tokenizer):
    """A periodic text: the last rolling window's context + continuation[:-1] equals an earlier
    window's, and its continuation is shorter; each must still be scored on its own last positions
    (lm-eval's `hf` backend scores the short one on the long one's positions when its cache is on)."""
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    tokens, L = [5, 6, 7, 8] * 9, 8
    windows = [
        make_disjoint_window(w)
        for w in get_rolling_token_windows(
            tokens, prefix_token=tokenizer.eos_id, max_seq_len=L, context_len=1
        )
    ]
    keys = [tuple(context + continuation[:-1]) for context, continuation in windows]
    assert keys[-1] in keys[:-1] and len(windows[-1][1]) < len(windows[-2][1])  # one pass, two lengths
    lm = LitLLMEval(gpt, tokenizer, max_length=L, batch_size=4, progress=False)
    got = lm._loglikelihood_tokens([(None, context, continuation) for context, continuation in windows])
    for (context, continuation), (logprob, _) in zip(windows, got):
        reference = direct_loglikelihood(gpt, context + continuation, len(continuation), L)[0]
        assert logprob == pytest.approx(reference, abs=1e-4)


def test_a_limit_not_below_the_context_generates_half_of_it_from_the_last_tokens(tokenizer, caplog):
    """max_length 32, max_gen_toks 64: 16 new tokens after the context's last 16, as lm-eval's `hf`
    backend with --gen_kwargs max_gen_toks=16; one warning per limit, not per wrapper."""
    gpt = tiny_gpt(tokenizer.vocab_size, max_seq_len=32)
    context = "The quick brown fox jumps over the lazy dog. " * 4
    ids = tokenizer.encode(context)
    assert len(ids) > 16
    lm = LitLLMEval(gpt, tokenizer, batch_size=2, progress=False)
    with caplog.at_level(logging.WARNING, logger="lit_llm.eval.wrapper"):
        (text,) = lm.generate_until(
            requests("generate_until", [(context, {"until": [], "max_gen_toks": 64})])
        )
        lm.generate_until(requests("generate_until", [(context, {"until": [], "max_gen_toks": 64})]))
        lm.generate_until(requests("generate_until", [(context, {"until": [], "max_gen_toks": 40})]))
    out = gpt.generate(torch.tensor(ids[-16:]), 16, temperature=0.0, stop_tokens=tokenizer.eos_id)[16:]
    assert len(out) == 16 and tokenizer.eos_id not in out.tolist()  # 16 tokens, not an early stop
    assert text == tokenizer.decode(out.tolist())
    warned = [r.getMessage() for r in caplog.records if "generated tokens" in r.getMessage()]
    assert len(warned) == 2 and all("--gen_kwargs max_gen_toks=16" in w for w in warned), warned
    assert "asks for 64" in warned[0] and "asks for 40" in warned[1]
