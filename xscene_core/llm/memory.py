"""The memory bank: described scenes (style, objects, background, scene-graph layout, abstract) with
their embeddings, searched by text with FAISS (the paper's retrieval-augmented description, Sec. 3.1).

Entries come from sources (the synthetic world, a nuScenes release; see `build_memory`); adding a
source adds entries. On disk a bank is a folder:

    entries.jsonl    one entry per line: {"entry_id", "source", "description": <paper JSON>, "layout": <scene graph text>}
    embeddings.npy   float32 [N, EMBED_DIM], row i embeds retrieval_text() of line i (read with allow_pickle=False)
    manifest.json    {"format", "count", "dim", "embedder", "sources": {source: count}}
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from ..scene_graph_text import parse
from ..types.scene import SceneDescription, SceneGraph
from .embedder import EMBED_DIM, EMBEDDER_NAME, embed

if TYPE_CHECKING:
    from ..data.nuscenes import NuScenesSource

FORMAT = "xscene.memory_bank/1"
DEFAULT_BANK_DIR = Path(__file__).resolve().parents[2] / "assets" / "memory_bank"
DEFAULT_TOP_K = 4  # memories retrieved per prompt (the LLM's in-context examples, the offline composer's sources)
SOURCES = ("synthetic", "nuscenes")  # the sources this package builds; another dataset may add its own name
_SOURCE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclass(frozen=True)
class MemoryEntry:
    """One remembered scene.

    entry_id: unique in a bank (e.g. "world17_downtown_0", "nuscenes_<sample token>"); source: the
    dataset it comes from ("synthetic", "nuscenes", ...); description: the full structured description
    (style S = time of day + weather, foreground objects O, background B, abstract); layout: the scene
    graph text L (`scene_graph_text.emit`), parsed on demand by `graph()`.
    """

    entry_id: str
    source: str
    description: SceneDescription
    layout: str
    _graph: list = field(default_factory=list, init=False, repr=False, compare=False)  # parse cache

    def __post_init__(self) -> None:
        if not isinstance(self.entry_id, str) or not self.entry_id.strip():
            raise ValueError(f"MemoryEntry.entry_id must be a non-empty string, got {self.entry_id!r}")
        if not isinstance(self.source, str) or not _SOURCE_RE.match(self.source):
            raise ValueError(f"MemoryEntry {self.entry_id}: source must be a lower-case name such as "
                             f"{' or '.join(SOURCES)}, got {self.source!r}")
        if not isinstance(self.description, SceneDescription):
            raise ValueError(f"MemoryEntry {self.entry_id}: description must be a SceneDescription")
        if not isinstance(self.layout, str):
            raise ValueError(f"MemoryEntry {self.entry_id}: layout must be the scene-graph text")

    # the paper's entry fields, read from the description (one place holds each value)
    @property
    def style(self) -> tuple[str, str]:
        """(time of day, weather)."""
        return self.description.time_of_day, self.description.weather

    @property
    def environment(self) -> str:
        return self.description.environment

    @property
    def foreground(self) -> tuple[tuple[str, str], ...]:
        return self.description.foreground

    @property
    def background(self) -> tuple[tuple[str, str], ...]:
        return self.description.background

    @property
    def abstract(self) -> str:
        return self.description.abstract

    def graph(self) -> SceneGraph:
        """The parsed scene graph (cached); raises ValueError naming the entry if its text is broken."""
        if not self._graph:
            try:
                self._graph.append(parse(self.layout))
            except ValueError as e:
                raise ValueError(f"memory entry {self.entry_id}: {e}") from None
        return self._graph[0]

    def retrieval_text(self) -> str:
        """What is embedded for search: environment and style first, the abstract, then the background
        and object names. The layout is left out (too long and too numeric for a sentence embedder), as
        are the object attributes: with them, queries named the right environment in 77% of the top-4
        hits of 216 environment x time x weather queries on the shipped bank; in this form, 92%."""
        time_of_day, weather = self.style
        background = ", ".join(thing for thing, _ in self.background) or "nothing"
        objects = ", ".join(thing for thing, _ in self.foreground) or "none"
        return (f"{self.environment} area at {time_of_day}, {weather} weather. {self.abstract} "
                f"Background: {background}. Objects: {objects}.")

    def to_json(self) -> dict:
        return {"entry_id": self.entry_id, "source": self.source, "description": self.description.to_json_dict(),
                "layout": self.layout}

    @classmethod
    def from_json(cls, d: dict) -> "MemoryEntry":
        if not isinstance(d, dict) or not {"entry_id", "source", "description", "layout"} <= set(d):
            raise ValueError("a memory entry needs the keys entry_id, source, description, layout")
        return cls(d["entry_id"], d["source"], SceneDescription.from_json_dict(d["description"]), d["layout"])


class MemoryBank:
    """Entries plus a FAISS inner-product index over their unit-length embeddings (cosine similarity).

    entries: initial entries; embeddings: float32 [N, EMBED_DIM] for them (computed when None).
    """

    def __init__(self, entries: Iterable[MemoryEntry] = (), embeddings: np.ndarray | None = None) -> None:
        import faiss  # imported here so `import xscene_core.llm` stays cheap

        self._entries: list[MemoryEntry] = []
        self._ids: set[str] = set()
        self._index = faiss.IndexFlatIP(EMBED_DIM)
        self.add(entries, embeddings)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> tuple[MemoryEntry, ...]:
        return tuple(self._entries)

    @property
    def embeddings(self) -> np.ndarray:
        """float32 [N, EMBED_DIM], row i for entries[i]."""
        if not len(self):
            return np.zeros((0, EMBED_DIM), np.float32)
        return self._index.reconstruct_n(0, len(self))

    def sources(self) -> dict[str, int]:
        return dict(Counter(e.source for e in self._entries))

    def add(self, entries: Iterable[MemoryEntry], embeddings: np.ndarray | None = None) -> int:
        """Add entries (a new dataset, or scenes a user kept); returns how many were added.

        embeddings: float32 [N, EMBED_DIM] unit rows for these entries, computed from retrieval_text()
        when None. Raises ValueError on a duplicate entry_id or an embedding of the wrong shape.
        """
        entries = list(entries)
        if not entries:
            return 0
        ids = [e.entry_id for e in entries]
        dup = sorted({i for i in ids if i in self._ids} | {i for i, n in Counter(ids).items() if n > 1})
        if dup:
            raise ValueError(f"memory bank: duplicate entry ids {dup[:5]}{' ...' if len(dup) > 5 else ''}")
        if embeddings is None:
            embeddings = embed([e.retrieval_text() for e in entries])
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.shape != (len(entries), EMBED_DIM):
            raise ValueError(f"memory bank: embeddings must have shape ({len(entries)}, {EMBED_DIM}), "
                             f"got {tuple(embeddings.shape)}")
        if not np.isfinite(embeddings).all():
            raise ValueError("memory bank: embeddings hold NaN or infinite values")
        self._index.add(embeddings)
        self._entries += entries
        self._ids.update(ids)
        return len(entries)

    def search(self, text: str, k: int = DEFAULT_TOP_K, environment: str | None = None) -> list[tuple[MemoryEntry, float]]:
        """The k entries most similar to text, best first, with their cosine similarity.

        environment: keep only entries of this environment (fewer than k come back when the bank holds
        fewer). An empty bank gives [].
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError("memory bank search needs a non-empty text")
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        if not len(self):
            return []
        query = embed([text])
        # a flat index scores every entry anyway, so filtering after a full ranking costs nothing extra
        n = len(self) if environment is not None else min(k, len(self))
        scores, idx = self._index.search(query, n)
        hits = [(self._entries[i], float(s)) for s, i in zip(scores[0], idx[0]) if i >= 0]
        if environment is not None:
            hits = [h for h in hits if h[0].environment == environment]
        return hits[:k]

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write the bank to folder (created); returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "entries.jsonl", "w", encoding="utf-8") as f:
            for e in self._entries:
                f.write(json.dumps(e.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n")
        np.save(folder / "embeddings.npy", self.embeddings, allow_pickle=False)
        manifest = {"format": FORMAT, "count": len(self), "dim": EMBED_DIM, "embedder": EMBEDDER_NAME,
                    "sources": self.sources()}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "MemoryBank":
        """Read a bank written by save(); raises ValueError naming the file and what is wrong."""
        folder = Path(folder)
        paths = {name: folder / name for name in ("manifest.json", "entries.jsonl", "embeddings.npy")}
        missing = [n for n, p in paths.items() if not p.is_file()]
        if missing:
            raise ValueError(f"memory bank {str(folder)!r}: missing {', '.join(missing)}")
        try:
            manifest = json.loads(paths["manifest.json"].read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{paths['manifest.json']}: not valid JSON ({e})") from None
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{paths['manifest.json']}: format {manifest.get('format')!r} is not {FORMAT!r}")
        if manifest.get("embedder") != EMBEDDER_NAME or manifest.get("dim") != EMBED_DIM:
            raise ValueError(f"{paths['manifest.json']}: built with embedder {manifest.get('embedder')!r} "
                             f"({manifest.get('dim')}-d), this package uses {EMBEDDER_NAME!r} ({EMBED_DIM}-d); "
                             "rebuild it with python -m xscene_core.llm.build_memory")
        entries = []
        with open(paths["entries.jsonl"], encoding="utf-8") as f:
            for no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    entries.append(MemoryEntry.from_json(json.loads(line)))
                except (json.JSONDecodeError, ValueError) as e:
                    raise ValueError(f"{paths['entries.jsonl']} line {no}: {e}") from None
        try:
            emb = np.load(paths["embeddings.npy"], allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{paths['embeddings.npy']}: {e}") from None
        if emb.dtype != np.float32:
            raise ValueError(f"{paths['embeddings.npy']}: dtype must be float32, got {emb.dtype}")
        if len(entries) != manifest.get("count") or emb.shape != (len(entries), EMBED_DIM):
            raise ValueError(f"memory bank {str(folder)!r}: manifest count {manifest.get('count')}, "
                             f"{len(entries)} entries and embeddings of shape {tuple(emb.shape)} disagree")
        return cls(entries, emb)

    @classmethod
    def default(cls) -> "MemoryBank":
        """The bank shipped in assets/memory_bank (synthetic train worlds)."""
        if not DEFAULT_BANK_DIR.is_dir():
            raise ValueError(f"the shipped memory bank is missing at {DEFAULT_BANK_DIR}; build it with "
                             "python -m xscene_core.llm.build_memory --out assets/memory_bank")
        return cls.load(DEFAULT_BANK_DIR)

    # -- sources -------------------------------------------------------------------------------------
    @classmethod
    def from_world(cls, seeds: Sequence[int], chunks_per_world: int | None = None,
                   progress: bool = False) -> "MemoryBank":
        """A bank of synthetic chunks of TRAIN world seeds (see build_memory.world_entries)."""
        from .build_memory import world_entries

        kwargs = {} if chunks_per_world is None else {"chunks_per_world": chunks_per_world}
        return cls(world_entries(seeds, progress=progress, **kwargs))

    @classmethod
    def from_nuscenes(cls, source: "NuScenesSource", progress: bool = False) -> "MemoryBank":
        """A bank of a nuScenes release's keyframe samples (see build_memory.nuscenes_entries)."""
        from .build_memory import nuscenes_entries

        return cls(nuscenes_entries(source, progress=progress))
