"""Lightning callbacks of the kit, installed as `lit_llm.callbacks` (one callback per file)."""
