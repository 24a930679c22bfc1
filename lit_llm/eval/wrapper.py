"""lm-eval model around the kit's GPT and Tokenizer, registered as "lit-llm".

    from lit_llm.eval.wrapper import LitLLMEval
    lm = LitLLMEval(gpt, tokenizer, batch_size=16)             # a live model (the training callback)
    lm = LitLLMEval(pretrained="runs/demo")                      # a checkpoint (or ckpt_path=...)
    lm_eval.simple_evaluate(model=lm, tasks=["perplexity"], task_manager=...)

    python -m lit_llm.eval --model lit-llm --model_args ckpt_path=runs/demo --tasks gsm8k --limit 10

Requests follow lm-eval's `hf` backend, so scores agree with it on the exported model:
loglikelihood sorts requests longest first (`Collator`), scores each shared context once for
one-token continuations, and reads continuation log-probs from the logits of the input with
its last token dropped; loglikelihood_rolling windows each document to the model's context
(`get_rolling_token_windows`); generate_until decodes with the KV cache until a stop
sequence, the end-of-text token or `max_gen_toks`, the prompt keeping its last
`max_length - max_gen_toks` tokens (a limit not below the context becomes half the context: the
`hf` backend refuses such a task unless given `--gen_kwargs max_gen_toks=<half>`). Under data
parallelism every rank scores its share of the requests; `all_gather` / `gather_object` /
`barrier` go through the Lightning strategy (or `torch.distributed`) instead of `accelerate`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.distributed as dist
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import (
    Collator,
    handle_stop_sequences,
    normalize_gen_kwargs,
    postprocess_generated_text,
)
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm.auto import tqdm

from lit_llm.errors import UserError
from lit_llm.model import GPT
from lit_llm.tokenizer import Tokenizer, load_tokenizer

log = logging.getLogger(__name__)
Request = tuple[
    tuple[str, str] | None, list[int], list[int]
]  # (strings for the cache hook, context, continuation)
_IGNORED_ARGS = {
    "max_batch_size",
    "data_dir",
    "text_file",
    "trust_remote_code",
}  # lm-eval's CLI passes these on


@register_model("lit-llm", "lit_llm")
class LitLLMEval(TemplateLM):
    """lm-eval `TemplateLM` over a `GPT` + `Tokenizer` (live objects, or loaded from a checkpoint).

    Args:
        pretrained: A live GPT, or a checkpoint file / run folder.
        tokenizer: A Tokenizer or tokenizer folder (default: the one the checkpoint names).
        ckpt_path: Same as a path in `pretrained` (lm-eval: --model_args ckpt_path=...).
        batch_size: Sequences per forward pass for loglikelihood, prompts per generation batch.
        max_length: Context in tokens (default: the model's max_seq_len).
        max_gen_toks: Default cap on generated tokens when a task sets none.
        device: Device for a checkpoint (default: cuda when available, else cpu); a live model stays put.
        dtype: Cast a loaded checkpoint to this dtype (float32, bfloat16, float16).
        strategy: A Lightning Strategy: ranks share the requests through its collectives.
        single_process: Score every request here, as rank 0 of 1, even inside a process group
            (rank 0 evaluating a gathered copy of a sharded model).
        seed: Seed of the private generator used when a task samples (do_sample); global RNGs are untouched.
        progress: Show a progress bar over requests (rank 0).
    """

    def __init__(
        self,
        pretrained: GPT | str | None = None,
        tokenizer: Tokenizer | str | None = None,
        *,
        ckpt_path: str | None = None,
        batch_size: int | str = 16,
        max_length: int | None = None,
        max_gen_toks: int = 256,
        device: str | None = None,
        dtype: str | None = None,
        strategy=None,
        single_process: bool = False,
        seed: int = 1234,
        progress: bool = True,
        **kwargs,
    ) -> None:
        super().__init__()
        unknown = set(kwargs) - _IGNORED_ARGS
        if unknown:
            log.warning("lit-llm: ignoring model arguments %s", sorted(unknown))
        self.gpt, self.tokenizer = _resolve(
            pretrained if pretrained is not None else ckpt_path, tokenizer, device, dtype
        )
        if self.tokenizer.vocab_size != self.gpt.config.vocab_size:
            raise UserError(
                f"tokenizer has {self.tokenizer.vocab_size} ids, the model {self.gpt.config.vocab_size}"
            )
        self._device = next(self.gpt.parameters()).device
        self._max_length = int(max_length or self.gpt.config.max_seq_len)
        self._max_gen_toks = int(max_gen_toks)
        self._warned_caps: set[int] = set()  # task limits already warned about
        self._batch_size = _parse_batch_size(batch_size)
        self.seed, self.progress, self.strategy = seed, progress, strategy
        if strategy is not None:
            self._rank, self._world_size = strategy.global_rank, strategy.world_size
        elif dist.is_available() and dist.is_initialized() and not single_process:
            self._rank, self._world_size = dist.get_rank(), dist.get_world_size()

    # ---- facts lm-eval asks for --------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def tokenizer_name(self) -> str:
        return str(self.tokenizer.path).replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.tokenizer.encode(string)

    def tok_decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens)

    def get_model_info(self) -> dict:
        return {
            "model_num_parameters": self.gpt.num_params(),
            "model_dtype": str(next(self.gpt.parameters()).dtype),
            "max_length": self.max_length,
            "tokenizer_path": str(self.tokenizer.path),
        }

    # ---- distributed: each rank scores a share of the requests -------------------------

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate a tensor over ranks (a scalar becomes a (world_size,) vector), as accelerate does."""
        if self.world_size == 1:
            return tensor
        if self.strategy is not None:
            gathered = self.strategy.all_gather(tensor)  # (world, *shape)
        else:
            parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
            dist.all_gather(parts, tensor)
            gathered = torch.stack(parts)
        return gathered if tensor.dim() == 0 else gathered.flatten(0, 1)

    def gather_object(self, obj, dst: int = 0):
        if self.world_size == 1:
            return [obj]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered if self.rank == dst else None

    def barrier(self) -> None:
        if self.world_size == 1:
            return
        if self.strategy is not None:
            self.strategy.barrier("lit_llm_eval")
        else:
            dist.barrier()

    # ---- loglikelihood ---------------------------------------------------------------

    def _bar(self, total: int, desc: str, disable: bool):
        return tqdm(
            total=total, desc=desc, disable=disable or not self.progress or self.rank != 0, leave=False
        )

    @torch.no_grad()
    def _logits(self, rows: list[list[int]]) -> torch.Tensor:
        """Logits (B, T, V) of right-padded rows; padding after a row never changes its causal logits."""
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0
        batch = torch.full((len(rows), width), pad, dtype=torch.long)
        for i, row in enumerate(rows):
            batch[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return self.gpt(batch.to(self._device))

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm or not self.progress)

    def _loglikelihood_tokens(
        self, requests: list[Request], disable_tqdm: bool = False, desc: str = "loglikelihood", **kwargs
    ) -> list[tuple[float, bool]]:
        """(sum of continuation log-probs, whether greedy decoding gives the continuation) per request."""
        collator = Collator(requests, sort_fn=_longest_first, group_by="contexts", group_fn=_context_key)
        results = []
        bar = self._bar(len(requests), desc, disable_tqdm)
        for chunk in collator.get_batched(n=self.batch_size):
            rows = [self._input_row(context, continuation) for _, context, continuation in chunk]
            logits = self._logits(rows)  # (B, T, V)
            for (strings, context, continuation), row, row_logits in zip(chunk, rows, logits):
                # row = (context + continuation)[:-1]: the logits at its last len(continuation)
                # positions predict the continuation tokens.
                start = len(row) - len(continuation)
                logprobs = row_logits[start : len(row)].float().log_softmax(-1)[None]  # (1, n, V)
                for strings_i, cont_i, lp in collator.get_cache(
                    req_str=strings, cxt_toks=context, cont_toks=continuation, logits=logprobs
                ):
                    target = torch.tensor(cont_i, device=lp.device)[None]  # (1, n_i)
                    lp = lp[:, -target.shape[1] :]  # one-token continuations share the context's logits
                    answer = (
                        float(lp.gather(2, target[..., None]).sum()),
                        bool((lp.argmax(-1) == target).all()),
                    )
                    results.append(answer)
                    if strings_i is not None:
                        self.cache_hook.add_partial("loglikelihood", strings_i, answer)
                    bar.update(1)
        bar.close()
        return collator.get_original(results)

    def _input_row(self, context: list[int], continuation: list[int]) -> list[int]:
        """The model input: context + continuation without its last token, left-truncated to max_length."""
        if len(continuation) > self.max_length:
            raise ValueError(
                f"continuation of {len(continuation)} tokens exceeds max_length={self.max_length}"
            )
        return (context + continuation)[-(self.max_length + 1) :][:-1]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of whole documents, scored in disjoint windows of up to max_length tokens."""
        windows, owner = [], []
        for i, (text,) in enumerate(req.args for req in requests):
            pairs = get_rolling_token_windows(
                token_list=self.tok_encode(text),
                prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length,
                context_len=1,
            )
            for context, continuation in map(make_disjoint_window, pairs):
                windows.append((None, context, continuation))
                owner.append(i)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm, desc="loglikelihood_rolling")
        totals = [0.0] * len(requests)
        for i, (logprob, _) in zip(owner, scores):
            totals[i] += logprob
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # ---- generation ------------------------------------------------------------------

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Continuations of each context, cut at the first stop sequence."""
        args = [req.args for req in requests]
        encoded = {context: self.tok_encode(context) for context, _ in args}
        collator = Collator(
            args,
            sort_fn=lambda r: (-len(encoded[r[0]]), r[0]),
            group_by="gen_kwargs",
            group_fn=lambda r: r[1],
        )
        generator = torch.Generator(device=self._device).manual_seed(self.seed)
        eos_text = self.tokenizer.decode([self.eot_token_id])
        results = []
        bar = self._bar(len(requests), "generate_until", disable_tqdm)
        for chunk in collator.get_batched(n=self.batch_size):
            kwargs = normalize_gen_kwargs(chunk[0][1], self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos_text)
            kwargs["max_gen_toks"] = self._generation_limit(int(kwargs["max_gen_toks"]))
            prompts = [self._prompt(encoded[context], kwargs["max_gen_toks"]) for context, _ in chunk]
            for group in _same_length_runs(prompts):
                for tokens in self._generate([prompts[i] for i in group], until, kwargs, generator):
                    text = postprocess_generated_text(self.tok_decode(tokens), until, None)
                    results.append(text)
                    bar.update(1)
            for (context, gen_kwargs), text in zip(chunk, results[-len(chunk) :]):
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        bar.close()
        return collator.get_original(results)

    def _generation_limit(self, max_gen_toks: int) -> int:
        """Tokens to generate: the task's limit when it is below the context (as lm-eval's `hf` backend),
        else half the context (what `hf` does with `--gen_kwargs max_gen_toks=<half>`; it refuses without)."""
        if max_gen_toks < self.max_length:
            return max_gen_toks
        half = self.max_length // 2
        if max_gen_toks not in self._warned_caps:
            self._warned_caps.add(max_gen_toks)
            log.warning(
                "lit-llm: a task asks for %d generated tokens, the context is %d; generating at most %d "
                "(lm-eval's hf backend: --gen_kwargs max_gen_toks=%d)",
                max_gen_toks,
                self.max_length,
                half,
                half,
            )
        return half

    def _prompt(self, tokens: list[int], max_gen_toks: int) -> list[int]:
        """Keep the last `max_length - max_gen_toks` tokens of the context (as the `hf` backend)."""
        return (tokens or [self.prefix_token_id])[-(self.max_length - max_gen_toks) :]

    def _generate(
        self, prompts: list[list[int]], until: list[str], kwargs: dict, generator: torch.Generator
    ) -> list[list[int]]:
        """New tokens for equal-length prompts (`GPT.decode_steps`), each row stopped at eos or a stop string."""
        steps = min(int(kwargs["max_gen_toks"]), self.max_length - len(prompts[0]))
        temperature = float(kwargs.get("temperature", 1.0)) if kwargs.get("do_sample") else 0.0
        idx = torch.tensor(prompts, dtype=torch.long, device=self._device)  # (B, T)
        decoding = self.gpt.decode_steps(
            idx, steps, temperature, kwargs.get("top_k"), kwargs.get("top_p"), generator
        )
        new: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        for tokens in decoding:
            for row, token in enumerate(tokens.tolist()):
                if done[row]:
                    continue
                if token == self.eot_token_id:
                    done[row] = True
                    continue
                new[row].append(token)
                tail = self.tok_decode(new[row][-32:])  # a stop string ends within the last tokens
                done[row] = any(stop and stop in tail for stop in until)
            if all(done):
                break
        return new


def _resolve(model, tokenizer, device: str | None, dtype: str | None) -> tuple[GPT, Tokenizer]:
    """A live GPT as it is, or one loaded from a checkpoint; the tokenizer object or folder."""
    if isinstance(model, GPT):
        gpt = model
        if tokenizer is None:
            raise UserError("pass the tokenizer (object or folder) with a live model")
    elif isinstance(model, str | Path):
        from lit_llm.checkpoint import load_gpt

        if device is None or (str(device).startswith("cuda") and not torch.cuda.is_available()):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        gpt, info = load_gpt(model, map_location=device)
        if dtype is not None:
            gpt = gpt.to(getattr(torch, dtype))
        tokenizer = tokenizer or info.tokenizer_path
        if tokenizer is None:
            raise UserError(f"{info.path}: checkpoint names no tokenizer; pass tokenizer=DIR")
    else:
        raise UserError(
            "lit-llm needs a model: a GPT, or pretrained=/ckpt_path= a checkpoint file or run folder"
        )
    return gpt, tokenizer if isinstance(tokenizer, Tokenizer) else load_tokenizer(tokenizer)


def _parse_batch_size(value: int | str) -> int:
    if isinstance(value, str) and value.startswith("auto"):
        log.warning("lit-llm: batch_size=auto is not supported; using 16")
        return 16
    size = int(value)
    if size < 1:
        raise UserError(f"batch_size must be >= 1, got {size}")
    return size


def _longest_first(req: Request):
    tokens = req[1] + req[2]
    return -len(tokens), tuple(tokens)


def _context_key(req: Request) -> list[int]:
    """Requests with equal context + continuation[:-1] share one forward pass (multiple-choice letters)."""
    return req[1] + req[2][:-1]


def _same_length_runs(prompts: list[list[int]]) -> list[list[int]]:
    """Indices of consecutive prompts of equal length (decoded together without padding)."""
    runs: list[list[int]] = []
    for i, prompt in enumerate(prompts):
        if runs and len(prompts[runs[-1][0]]) == len(prompt):
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


__all__ = ["LitLLMEval"]
