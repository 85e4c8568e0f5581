"""Words -> scene descriptions: the memory bank (embeddings + FAISS retrieval), the OpenAI-compatible
LLM client, its prompts and the answer schema.

Names load on first use, so `import xscene_core.llm` stays cheap (faiss, openai and
sentence-transformers are imported only by the code that needs them).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "embed": "embedder", "EMBEDDER_NAME": "embedder", "EMBED_DIM": "embedder",
    "MemoryEntry": "memory", "MemoryBank": "memory", "DEFAULT_TOP_K": "memory",
    "LLMConfig": "client", "LLMClient": "client", "LLMError": "client",
    "check_answer": "schema", "DescribedScene": "schema", "SchemaError": "schema",
    "describe_with_llm": "llm_describer", "memory_entry_with_llm": "llm_describer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
