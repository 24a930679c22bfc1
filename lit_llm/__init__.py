"""lit-llm: a Lightning-based kit to pre-train language models from raw text to a Hugging Face model."""

__version__ = "0.1.0"
