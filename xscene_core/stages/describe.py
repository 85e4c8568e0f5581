"""Describe stage: a prompt -> DescribedScene (the paper's description JSON and the scene graph).

    stage = DescribeStage()                      # shipped memory bank; LLM from XSCENE_LLM_* if set
    scene = stage("a rainy night on a downtown crossroad with parked cars", seed=0)

Retrieval-augmented like the paper (Sec. 3.1): the k nearest memories of the bank ground the answer.
With an LLM endpoint configured (xscene_core.llm.LLMConfig.from_env) the model writes the scene from
the prompt and those memories; otherwise, or when the endpoint fails, the offline composer synthesises
it (xscene_core.llm.composer). Either way a prompt always yields a valid description and graph.
"""

from __future__ import annotations

import logging
from typing import Callable

from ..types.scene import DescribedScene

log = logging.getLogger(__name__)


class DescribeStage:
    """prompt -> DescribedScene.

    bank: a MemoryBank (default: the shipped one, loaded on first use); llm: an LLMConfig, None for the
    offline path; "env" reads XSCENE_LLM_BASE_URL / _MODEL / _API_KEY; k: memories retrieved.
    """

    def __init__(self, bank=None, llm="env", k: int | None = None) -> None:
        from ..llm.client import LLMConfig
        from ..llm.memory import DEFAULT_TOP_K

        self._bank = bank
        self.llm = LLMConfig.from_env() if llm == "env" else llm
        self.k = DEFAULT_TOP_K if k is None else int(k)
        self.last_source = ""  # "llm" or "offline": which path wrote the last answer

    @property
    def bank(self):
        if self._bank is None:
            from ..llm.memory import MemoryBank

            self._bank = MemoryBank.default()
        return self._bank

    def check_inputs(self, prompt: str) -> None:
        if not isinstance(prompt, str):
            raise ValueError(f"DescribeStage: the prompt must be text, got {type(prompt).__name__}")
        if not prompt.strip():
            raise ValueError("DescribeStage: the prompt is empty; describe the scene, e.g. "
                             "'a rainy night on a downtown crossroad with parked cars'")
        if len(prompt) > 4000:
            raise ValueError(f"DescribeStage: the prompt is {len(prompt)} characters; keep it under 4000")

    def __call__(self, prompt: str, seed: int = 0, step_callback: Callable[[str], None] | None = None) -> DescribedScene:
        """The description and scene graph of a prompt, deterministic under `seed` on the offline path."""
        from ..llm.composer import compose_prompt

        self.check_inputs(prompt)
        # 1. Retrieve the nearest memories.
        retrieved = self.bank.search(prompt, self.k)
        if step_callback:
            step_callback(f"retrieved {len(retrieved)} memories")
        # 2. Ask the LLM when one is configured.
        if self.llm is not None:
            from ..llm.llm_describer import describe_with_llm
            from ..llm.client import LLMError

            try:
                description, graph = describe_with_llm(prompt, self.bank, self.llm, self.k)
                self.last_source = "llm"
                return DescribedScene(description, graph)
            except LLMError as e:  # keep working without the endpoint; say so
                log.warning("LLM endpoint failed (%s); using the offline composer", e)
                if step_callback:
                    step_callback(f"LLM failed ({e}); using the offline composer")
        # 3. Otherwise compose offline from the prompt and the memories.
        description, graph = compose_prompt(prompt, retrieved, seed)
        self.last_source = "offline"
        return DescribedScene(description, graph)
