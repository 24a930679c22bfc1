"""Benchmark evaluation with EleutherAI's lm-evaluation-harness, offline, in the training loop and after it.

    lit_llm.eval.wrapper   LitLLMEval: the lm-eval model around a live GPT + Tokenizer ("lit-llm")
    lit_llm.eval.tasks     local task files: mmlu, gsm8k, humaneval, perplexity (data under --data_dir)
    lit_llm.eval.config    EvalConfig: the settings of the command and the callback, written once
    lit_llm.eval.runner    run_tasks / flat_metrics: shared by the command and the callback
    lit_llm.eval.command   `lit-llm evaluate --ckpt_path RUN --tasks mmlu,gsm8k --limit 50`
    python -m lit_llm.eval lm-eval's own command line with the "lit-llm" model and local tasks registered

lm-eval is imported lazily (it takes seconds), so importing this package is cheap.
"""
