"""A user's world and its edit history: undo/redo, autosave to a per-session folder, restore, export.

    session = Session.create(Path("~/.xscene/sessions"))       # a new folder <root>/<id>/
    session.record("generate 'a rainy night ...'")             # before an operation: the undo point
    session.set_world(world)                                   # after each finished stage: autosaved
    session.undo(); session.redo()
    session = Session.restore(Path("~/.xscene/sessions/<id>"))  # after a crash or a closed tab
    session.export(Path("out/export"), gaussians=scene)         # Occ3D npz, images + calibration, PLY, JSON

History holds whole-world snapshots, but a snapshot is only a dict of references to Chunk objects: the
generator never changes a chunk in place (edits and extensions build new chunks), so consecutive
snapshots share every chunk that did not change and an entry costs a few bytes per chunk. Code that
holds a Session must keep that rule: replace chunks, never mutate them.

Autosave writes only what changed since the last save: a chunk folder is rewritten when the chunk at
its index is another object than the one saved, removed when the index left the world, and world.json
(the chunk list) is replaced last, atomically, so the folder always holds one consistent world. UI-free:
no Gradio or viser here.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from .data.chunk_io import load_world, save_chunk
from .data.occ3d import write_labels_npz
from .types.gaussians import GaussianScene
from .types.world import Chunk, ChunkIndex, WorldMap

SESSION_FORMAT = "xscene.session/1"
HISTORY_LIMIT = 50  # undo steps kept; the oldest are dropped (their chunks are freed when nothing holds them)


@dataclass(frozen=True)
class Snapshot:
    """One state of the world: stride, the chunk at each index (shared references) and what led to it."""

    stride: float
    chunks: tuple[tuple[ChunkIndex, Chunk], ...]
    label: str

    @classmethod
    def of(cls, world: WorldMap | None, label: str) -> "Snapshot | None":
        if world is None:
            return None
        return cls(world.stride, tuple(world.chunks.items()), label)

    def world(self) -> WorldMap:
        """A new WorldMap holding the snapshot's chunks (the Chunk objects themselves, not copies)."""
        return WorldMap(self.stride, dict(self.chunks))


@dataclass
class SessionInfo:
    """What the session remembers besides the world (saved in session.json): the last prompt, seed and
    image mode the user chose, and the time of the last autosave (seconds since the epoch)."""

    prompt: str = ""
    seed: int = 0
    images: str = "preview"
    saved_at: float = 0.0
    chunks: int = 0

    def to_dict(self) -> dict:
        return {"format": SESSION_FORMAT, "prompt": self.prompt, "seed": self.seed, "images": self.images,
                "saved_at": self.saved_at, "chunks": self.chunks}

    @classmethod
    def from_dict(cls, d: dict) -> "SessionInfo":
        if d.get("format") != SESSION_FORMAT:
            raise ValueError(f"not an xscene session file (format {d.get('format')!r}, expected {SESSION_FORMAT!r})")
        return cls(str(d.get("prompt", "")), int(d.get("seed", 0)), str(d.get("images", "preview")),
                   float(d.get("saved_at", 0.0)), int(d.get("chunks", 0)))


@dataclass
class Session:
    """A world being edited, its undo/redo stacks and the folder it autosaves to.

    folder: <root>/<session id>/ holding world/ (a WorldMap folder, data.chunk_io) and session.json;
    autosave: write after every set_world (False keeps everything in memory, e.g. in tests of history).
    """

    folder: Path
    world: WorldMap | None = None
    info: SessionInfo = field(default_factory=SessionInfo)
    autosave: bool = True
    _undo: list[tuple[Snapshot | None, str]] = field(default_factory=list)
    _redo: list[tuple[Snapshot | None, str]] = field(default_factory=list)
    # index -> the chunk object on disk (weak: an identity check that cannot be fooled by a reused id())
    _saved: dict[ChunkIndex, weakref.ref] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # -- creation ------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, session_id: str | None = None, autosave: bool = True) -> "Session":
        """A new, empty session in <root>/<session_id or a fresh id>/."""
        sid = session_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]
        if not sid.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"session id {sid!r}: use letters, digits, '-' and '_' only")
        folder = Path(root) / sid
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder, autosave=autosave)

    @property
    def id(self) -> str:
        return self.folder.name

    @classmethod
    def restore(cls, folder: str | Path, autosave: bool = True) -> "Session":
        """The session autosaved in `folder` (its world and info; the undo history starts empty).
        Raises ValueError when the folder holds no autosave."""
        folder = Path(folder)
        info_path = folder / "session.json"
        if not info_path.exists():
            raise ValueError(f"{folder}: no autosaved session here (session.json missing)")
        info = SessionInfo.from_dict(json.loads(info_path.read_text()))
        session = cls(folder, info=info, autosave=autosave)
        wdir = folder / "world"
        for old in wdir.glob("*.old"):  # a crash between the two renames of _replace_folder
            target = old.with_name(old.name[:-len(".old")])
            if not target.exists():
                old.rename(target)
        if (wdir / "world.json").exists():
            session.world = load_world(wdir)[0]
            session._saved = {i: weakref.ref(c) for i, c in session.world.chunks.items()}
        return session

    @staticmethod
    def list_autosaves(root: str | Path) -> list[tuple[Path, SessionInfo]]:
        """Autosaved sessions under `root` that hold a world, newest first."""
        found = []
        for d in Path(root).glob("*/session.json"):
            try:
                info = SessionInfo.from_dict(json.loads(d.read_text()))
            except (ValueError, json.JSONDecodeError):
                continue  # a foreign or broken file is not an autosave; skip it
            if info.chunks:
                found.append((d.parent, info))
        return sorted(found, key=lambda t: -t[1].saved_at)

    # -- history ---------------------------------------------------------------------------------------------
    def record(self, label: str) -> None:
        """Mark the current world as an undo point before an operation called `label`; clears redo."""
        with self._lock:
            self._undo.append((Snapshot.of(self.world, label), label))
            del self._undo[:-HISTORY_LIMIT]
            self._redo.clear()

    def drop_record(self) -> None:
        """Forget the last undo point (an operation that was cancelled or failed before changing anything)."""
        with self._lock:
            if self._undo:
                self._undo.pop()

    def revert(self) -> str | None:
        """Go back to the last undo point and forget it (an operation that stopped half-way, leaving
        nothing worth keeping); returns its label (None when there is no undo point)."""
        return self._step(self._undo, [])  # an undo whose redo step is thrown away

    def set_world(self, world: WorldMap | None) -> None:
        """The world after a finished stage: becomes the current state and is autosaved."""
        with self._lock:
            self.world = world
            if self.autosave:
                self.save()

    def undo(self) -> str | None:
        """Go back to the state before the last operation; returns its label (None when nothing to undo)."""
        return self._step(self._undo, self._redo)

    def redo(self) -> str | None:
        """Re-apply the last undone operation; returns its label (None when nothing to redo)."""
        return self._step(self._redo, self._undo)

    def _step(self, source: list, target: list) -> str | None:
        with self._lock:
            if not source:
                return None
            snapshot, label = source.pop()
            target.append((Snapshot.of(self.world, label), label))
            self.world = snapshot.world() if snapshot is not None else None
            if self.autosave:
                self.save()
            return label

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def history(self) -> tuple[list[str], list[str]]:
        """Labels of the undo and redo stacks, oldest first."""
        with self._lock:
            return [l for _, l in self._undo], [l for _, l in self._redo]

    # -- persistence -------------------------------------------------------------------------------------------
    def save(self) -> Path:
        """Autosave: the changed chunks, then world.json and session.json (module docstring)."""
        with self._lock:
            wdir = self.folder / "world"
            wdir.mkdir(parents=True, exist_ok=True)
            chunks = dict(self.world.chunks) if self.world is not None else {}
            for index, chunk in chunks.items():
                ref = self._saved.get(index)
                if ref is None or ref() is not chunk:
                    _replace_folder(wdir / str(index), lambda d, c=chunk: save_chunk(d, c))
                    self._saved[index] = weakref.ref(chunk)
            listing = {"format": "xscene.world/1", "stride": self.world.stride if self.world else 40.0,
                       "chunks": [[i.i, i.j] for i in sorted(chunks)]}
            _write_json(wdir / "world.json", listing)
            for index in set(self._saved) - set(chunks):  # chunks that left the world (undo of an extension)
                shutil.rmtree(wdir / str(index), ignore_errors=True)
                del self._saved[index]
            self.info.saved_at = time.time()
            self.info.chunks = len(chunks)
            _write_json(self.folder / "session.json", self.info.to_dict())
            return self.folder

    def save_world_as(self, directory: str | Path) -> Path:
        """A complete copy of the current world in `directory` (WorldMap.save), e.g. a named save."""
        with self._lock:
            if self.world is None or not self.world.chunks:
                raise ValueError("there is no world to save yet: generate a chunk first")
            return self.world.save(directory, {"prompt": self.info.prompt, "seed": self.info.seed})

    def load_world(self, directory: str | Path, label: str = "load world") -> None:
        """Replace the world by the one saved in `directory` (undoable). Raises ValueError for a folder
        that is not a world."""
        world = load_world(directory)[0]
        if not world.chunks:
            raise ValueError(f"{directory}: the world has no chunks")
        self.record(label)
        self.set_world(world)

    # -- export ------------------------------------------------------------------------------------------------
    def export(self, directory: str | Path, gaussians: GaussianScene | None = None) -> "ExportReport":
        """Write what perception tools read: per chunk <chunk_i_j>/labels.npz (Occ3D), <chunk_i_j>/cameras/
        (six PNGs + rig.json calibration; the generated images when present, else the preview),
        <chunk_i_j>/semantic.npz (rendered semantic + depth), scene.json (world, poses, descriptions,
        scene graphs, layouts) and, when `gaussians` is given, world.ply (3DGS PLY)."""
        from .ops.ply import write_ply

        with self._lock:
            world = self.world
        if world is None or not world.chunks:
            raise ValueError("there is nothing to export yet: generate a chunk first")
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        files: list[Path] = []
        scene = {"format": "xscene.scene/1", "stride": world.stride, "frame": "world: x east, y north, z up",
                 "chunks": []}
        for index in sorted(world.chunks):
            chunk = world.chunks[index]
            d = out / str(index)
            d.mkdir(exist_ok=True)
            if chunk.occupancy is not None:
                write_labels_npz(d / "labels.npz", chunk.occupancy)
                files.append(d / "labels.npz")
            images = chunk.images if chunk.images is not None else chunk.preview
            if images is not None:
                files += images.save(d / "cameras")
                files.append(d / "cameras" / "rig.json")
            if chunk.views is not None:
                chunk.views.save(d / "semantic.npz")
                files.append(d / "semantic.npz")
            scene["chunks"].append({
                "index": [index.i, index.j], "name": str(index), "T_world_chunk": chunk.T_world_chunk.tolist(),
                "images": "generated" if chunk.images is not None else ("preview" if images is not None else None),
                "description": chunk.description.to_json_dict() if chunk.description is not None else None,
                "scene_graph": chunk.graph.to_text() if chunk.graph is not None else None,
                "layout": chunk.layout.to_dict() if chunk.layout is not None else None,
            })
        _write_json(out / "scene.json", scene)
        files.append(out / "scene.json")
        ply = None
        if gaussians is not None:
            ply = write_ply(gaussians, out / "world.ply")
            files.append(ply)
        return ExportReport(out, tuple(files), ply)


@dataclass(frozen=True)
class ExportReport:
    """What export() wrote: the folder, every file, and the PLY (None when no Gaussians were given)."""

    folder: Path
    files: tuple[Path, ...]
    ply: Path | None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def _replace_folder(target: Path, write) -> None:
    """Write a folder under a temporary name, then swap it in, so that the old folder is complete until the
    new one is (a crash mid-write leaves the old chunk, never a mix of the two)."""
    tmp = target.with_name(target.name + ".writing")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    write(tmp)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
