"""`lit-llm export`: a checkpoint as a Hugging Face folder or a GGUF file, with a model card; optionally pushed.

    lit-llm export --ckpt_path runs/demo --out runs/demo/hf                   # transformers, lm-eval, vLLM
    lit-llm export --ckpt_path runs/demo --out runs/demo/gguf --format gguf --gguf_type q8_0   # llama.cpp, Ollama
    lit-llm export --ckpt_path runs/demo --out runs/demo/hf --push_to_hub me/demo-model

An output folder gets README.md (the model card: data, filters, dedup, decontamination, tokenizer,
architecture, tokens, validation loss, benchmark scores, limits; `lit_llm.model_card`). Every file
is written with the mode a new file of the user gets (0644 under umask 022).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lit_llm.checkpoint import load_gpt
from lit_llm.errors import UserError
from lit_llm.hf import make_readable, save_hf
from lit_llm.tokenizer import load_tokenizer

GENERIC_NAMES = ("hf", "gguf", "export", "out")  # the card is titled after the run instead
MODELFILE = 'FROM ./{file}\nTEMPLATE """{{{{ .Prompt }}}}"""\nPARAMETER stop "{eos}"\n'


def export_checkpoint(
    ckpt_path: str | Path,
    out: str | Path,
    tokenizer: str | Path | None = None,
    format: Literal["hf", "gguf"] = "hf",
    gguf_type: Literal["f32", "f16", "q8_0"] = "f16",
    data: str | Path | None = None,
) -> Path:
    """Write the checkpoint's GPT and tokenizer as a Hugging Face folder or a GGUF file (a folder holding
    model-<type>.gguf, or the file itself when `out` ends in .gguf); a folder gets a model card."""
    gpt, info = load_gpt(ckpt_path)
    folder = tokenizer or info.tokenizer_path
    tok = None
    if folder is not None:
        tok = load_tokenizer(folder)
        if tok.vocab_size != gpt.config.vocab_size:
            raise UserError(
                f"{folder}: tokenizer has {tok.vocab_size} ids, the model {gpt.config.vocab_size}"
            )
    out = Path(out)
    if format == "hf":
        eos, pad, bos = (tok.eos_id, tok.pad_id, tok.bos_id) if tok else (None, None, None)
        save_hf(gpt, out, tokenizer_dir=folder, eos_id=eos, pad_id=pad, bos_id=bos)
        files = ["model.safetensors"]
    else:
        files = [_export_gguf(gpt, out, folder, gguf_type, tok)]
        if out.suffix == ".gguf":
            return out
    _write_card(gpt, info, out, folder, data, files)
    return out


def _export_gguf(gpt, out: Path, tokenizer_dir, gguf_type: str, tok) -> str:
    """Write the GGUF file (and an Ollama Modelfile beside it in a folder); return the file's name."""
    from lit_llm.gguf_export import write_gguf

    if tokenizer_dir is None:
        raise UserError("--format gguf needs the tokenizer: the checkpoint names none; pass --tokenizer DIR")
    path = out if out.suffix == ".gguf" else out / f"model-{gguf_type}.gguf"
    write_gguf(gpt, path, tokenizer_dir, gguf_type, name=(out.stem if out.suffix else out.name))
    if out.suffix != ".gguf":
        (out / "Modelfile").write_text(MODELFILE.format(file=path.name, eos=tok.eos_token))
        make_readable([out / "Modelfile"])
    return path.name


def _write_card(gpt, info, out: Path, tokenizer_dir, data, files: list[str]) -> None:
    from lit_llm.model_card import gather_facts, render_card, run_folder

    facts = gather_facts(gpt, info, tokenizer_dir=tokenizer_dir, data=data)
    facts.files = files
    run = run_folder(Path(info.path).resolve())
    name = run.name if run is not None and out.name in GENERIC_NAMES else out.name
    (out / "README.md").write_text(render_card(facts, name), encoding="utf-8")
    make_readable([out / "README.md"])


def check_hub_online(repo: str) -> None:
    """A one-line `UserError` when the Hub is switched off (HF_HUB_OFFLINE), before any export work."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise UserError(f"cannot push to {repo}: HF_HUB_OFFLINE is set (unset it to upload)")


def upload_to_hub(path: str | Path, repo: str, private: bool = False) -> str:
    """Upload an export folder (or a .gguf file) to the Hugging Face Hub model repo `repo`, creating it;
    a one-line `UserError` when offline, not logged in or refused. Returns the repo's URL."""
    from huggingface_hub import HfApi

    check_hub_online(repo)
    path = Path(path)
    api = HfApi()
    try:
        url = api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        if path.is_dir():
            api.upload_folder(folder_path=str(path), repo_id=repo, repo_type="model")
        else:
            api.upload_file(path_or_fileobj=str(path), path_in_repo=path.name, repo_id=repo)
    except Exception as err:  # network, auth and hub errors come in many types; each is one line here
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise UserError(f"cannot push to {repo}: {type(err).__name__}: {first}") from None
    return str(url)


def export_command(
    ckpt_path: str,
    out: str,
    tokenizer: str | None = None,
    format: Literal["hf", "gguf"] = "hf",
    gguf_type: Literal["f32", "f16", "q8_0"] = "f16",
    data: str | None = None,
    push_to_hub: str | None = None,
    private: bool = False,
) -> None:
    """Export a checkpoint: a Hugging Face folder (transformers) or a GGUF file (llama.cpp, Ollama, LM Studio).

    Args:
        ckpt_path: Checkpoint file, or a run folder containing checkpoints/last.ckpt.
        out: Output folder (with a model card, README.md); for --format gguf also a file name ending in .gguf.
        tokenizer: Tokenizer folder (default: the one recorded in the checkpoint).
        format: hf: config.json, model.safetensors, tokenizer and generation config; gguf: one GGUF file
            (needs the gguf package: pip install 'lit-llm[export]').
        gguf_type: Weight type of a GGUF export: f32, f16 or q8_0 (8-bit, about half of f16's size).
        data: Data folder (or its manifest.json) for the model card (default: the one in the run's config.yaml).
        push_to_hub: Upload the export to this Hugging Face Hub model repo (user/name; needs `hf auth login`).
        private: Create the Hub repo private.
    """
    if push_to_hub:
        check_hub_online(push_to_hub)
    path = export_checkpoint(ckpt_path, out, tokenizer, format, gguf_type, data)
    print(f"exported {ckpt_path} -> {path}")
    if push_to_hub:
        print(f"pushed {path} -> {upload_to_hub(path, push_to_hub, private)}")
