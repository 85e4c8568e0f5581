"""The editor's process: the shared stages, one EditorSession per browser session, named saves, exports.

    from app.server import Editor
    Editor(data_dir=Path("~/.xscene")).launch(host="127.0.0.1", port=7860)

Browser sessions are told apart by Gradio's session hash; each gets its own Session folder (autosave),
its own viser server (its own port) and its own worker, so two sessions never see or change each other's
world. A session ends (its viewer stops) when its tab is closed; its autosave stays on disk.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
from pathlib import Path

from xscene_core.session import Session

from .editor import EditorSession
from .jobs import JobContext, StagePool
from .uploads import zip_folder

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
MAX_SESSIONS = 16  # each holds a viser server and its worlds in memory


class Editor:
    """data_dir holds sessions/ (autosaves, one folder per browser session) and worlds/ (named saves)."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", viewer_port: int = 8100,
                 pool: StagePool | None = None, share: bool = False) -> None:
        self.data_dir = Path(data_dir).expanduser()
        self.sessions_dir = self.data_dir / "sessions"
        self.worlds_dir = self.data_dir / "worlds"
        self.exports_dir = Path(tempfile.mkdtemp(prefix="xscene-exports-"))
        for d in (self.sessions_dir, self.worlds_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.viewer_port = viewer_port
        self.share = share  # each session's viewer also asks viser for a public link
        self.pool = pool or StagePool()
        self.sessions: dict[str, EditorSession] = {}
        self._lock = threading.Lock()

    # -- sessions ---------------------------------------------------------------------------------------
    def session(self, key: str) -> EditorSession:
        """The EditorSession of a browser session (created on first use)."""
        with self._lock:
            es = self.sessions.get(key)
            if es is None:
                if len(self.sessions) >= MAX_SESSIONS:
                    raise RuntimeError(f"the editor serves at most {MAX_SESSIONS} sessions at once; close a tab")
                es = EditorSession(self.pool, self.sessions_dir, self._viewer_host(), self.viewer_port,
                                   share=self.share)
                self.sessions[key] = es
            return es

    def close(self, key: str) -> None:
        with self._lock:
            es = self.sessions.pop(key, None)
        if es is not None:
            es.close()

    def _viewer_host(self) -> str:
        return self.host

    # -- named saves --------------------------------------------------------------------------------------
    def saved_worlds(self) -> list[str]:
        return sorted((d.name for d in self.worlds_dir.iterdir() if (d / "world.json").exists()), key=str.lower)

    def save(self, es: EditorSession, name: str) -> tuple[Path, bool]:
        """The world saved as `name` under the worlds folder; (its folder, whether it replaced an earlier
        save of that name)."""
        name = name.strip()
        if not NAME_RE.match(name):
            raise ValueError(f"'{name}' cannot be a world name: use letters, digits, '-' and '_' (up to 64)")
        target = self.worlds_dir / name
        tmp = self.worlds_dir / f".{name}.writing"
        shutil.rmtree(tmp, ignore_errors=True)
        es.session.save_world_as(tmp)
        replaced = target.exists()
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        return target, replaced

    def load(self, es: EditorSession, name: str) -> None:
        if name not in self.saved_worlds():
            raise ValueError(f"there is no saved world named '{name}'")
        es.load(self.worlds_dir / name)

    def autosaves(self) -> list[tuple[str, str]]:
        """(label, session id) of autosaved sessions, newest first."""
        import time

        out = []
        for folder, info in Session.list_autosaves(self.sessions_dir)[:30]:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.saved_at))
            out.append((f"{when}: {info.chunks} chunk(s) - {info.prompt[:40] or 'from a layout'}", folder.name))
        return out

    def restore(self, es: EditorSession, session_id: str) -> None:
        folder = self.sessions_dir / session_id
        if not NAME_RE.match(session_id) or not folder.is_dir():
            raise ValueError("that autosave no longer exists")
        es.load(folder / "world", f"the autosave {session_id}")

    # -- export -------------------------------------------------------------------------------------------
    def export(self, es: EditorSession) -> None:
        """A job: lift the world to Gaussians when needed, write the export folder and zip it; the page
        offers the zip when es.export_path is set."""
        world = es.world
        if world is None or not any(c.occupancy is not None for c in world.chunks.values()):
            raise ValueError("there is nothing to export yet: generate a chunk first")
        es._require_idle()

        def run(ctx: JobContext) -> str:
            key = es.world_key(world)
            scene = es.gaussians[1] if es.gaussians is not None and es.gaussians[0] == key else None
            if scene is None and es.pool.gaussians_available:
                scene = ctx.gen.gaussians(world, ctx.progress)
                es.gaussians = (key, scene)
            ctx.done("gaussians", "done" if scene is not None else "skipped")
            folder = self.exports_dir / es.session.id
            shutil.rmtree(folder, ignore_errors=True)
            report = es.session.export(folder, scene)
            es.export_path = zip_folder(folder, self.exports_dir / f"xscene-{es.session.id}.zip")
            ply = "world.ply" if report.ply else "no PLY (the Gaussian stage is not installed)"
            return (f"Exported {len(world.chunks)} chunk(s): Occ3D labels.npz, six camera images + rig.json, "
                    f"scene.json, {ply}. Download the zip below.")
        es.worker.start("export", ("gaussians",), run)
