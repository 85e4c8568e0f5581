"""The LLM path of the Describe stage: retrieve memories, ask the model, check the answer.

    describe_with_llm(prompt, bank, config) -> (SceneDescription, SceneGraph)   # novel scene (prompt b)
    memory_entry_with_llm(entry_id, source, views, config) -> MemoryEntry       # memory construction (prompt a)
"""

from __future__ import annotations

from typing import Sequence

from ..scene_graph_text import emit
from ..types.scene import SceneDescription, SceneGraph
from .client import LLMClient, LLMConfig
from .memory import DEFAULT_TOP_K, MemoryBank, MemoryEntry
from .prompts import memory_prompt, novel_prompt
from .schema import check_answer


def describe_with_llm(prompt: str, bank: MemoryBank, config: LLMConfig, k: int = DEFAULT_TOP_K,
                      client: LLMClient | None = None) -> tuple[SceneDescription, SceneGraph]:
    """A new description and scene graph for a user's prompt.

    prompt: free text; bank: memories searched for the k nearest in-context examples; config: the
    endpoint (ignored when client is given). Raises LLMError when the endpoint fails or answers invalid
    JSON twice; ValueError on an empty prompt.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("describe_with_llm needs a non-empty prompt")
    memories = [entry for entry, _ in bank.search(prompt, k)]
    chat = novel_prompt(prompt, memories)
    scene = (client or LLMClient(config)).complete_json(chat.system, chat.user, check_answer)
    return scene.description, scene.graph


def memory_entry_with_llm(entry_id: str, source: str, views: Sequence[str], config: LLMConfig, notes: str = "",
                          client: LLMClient | None = None) -> MemoryEntry:
    """A memory entry written by the LLM from six view captions or summaries (CAMERA_NAMES order), e.g.
    for a dataset whose scenes have images but no structured description. Raises LLMError as above."""
    chat = memory_prompt(views, notes)
    scene = (client or LLMClient(config)).complete_json(chat.system, chat.user, check_answer)
    return MemoryEntry(entry_id, source, scene.description, emit(scene.graph))
