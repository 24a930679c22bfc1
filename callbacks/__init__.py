"""Lightning callbacks of the kit, installed as `lit_llm.callbacks` (one callback per file)."""

from lit_llm.callbacks.progress import TrainingProgressBar

__all__ = ["TrainingProgressBar"]
