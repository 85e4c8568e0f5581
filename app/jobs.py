"""Long work off the page's threads: one job per session at a time, run in a worker thread, with a
progress record per stage and a Cancel that stops it.

The stages are loaded once (StagePool) and shared by every session; one job computes at a time (the
machine has a few cores; two jobs at once would only run both at half speed), others wait their turn.
Each job gets its own Generator around the shared stages, so its cancel flag is its own: cancelling one
session never stops another's work.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from xscene_core.generator import STAGES, GenerationCancelled, Generator, Progress

REPO = Path(__file__).resolve().parents[1]
DIFFUSION_CHECKPOINT = REPO / "checkpoints" / "image_diffusion"


class StagePool:
    """The shipped stages, loaded on first use (or by preload()) and shared; `lock` serialises compute."""

    def __init__(self) -> None:
        self._base = Generator()
        self.lock = threading.Lock()
        self.load_error: str | None = None

    @property
    def diffusion_available(self) -> bool:
        """The image diffusion model is offered only when its checkpoint is installed."""
        return DIFFUSION_CHECKPOINT.is_dir() and (DIFFUSION_CHECKPOINT / "config.json").exists()

    @property
    def gaussians_available(self) -> bool:
        try:
            self._base.gaussian_stage
            return True
        except ImportError:
            return False

    def preload(self) -> threading.Thread:
        """Load the core stages in a background thread (the page is usable meanwhile)."""
        def load() -> None:
            try:
                for name in ("describe_stage", "layout_stage", "occupancy_stage", "render_stage"):
                    getattr(self._base, name)
            except Exception as err:  # shown in the page when a job needs the stage
                self.load_error = f"{type(err).__name__}: {err}"
        t = threading.Thread(target=load, name="xscene-preload", daemon=True)
        t.start()
        return t

    def generator(self, images: str = "preview") -> Generator:
        """A Generator of its own (own cancel flag) around the shared stages."""
        b = self._base
        return Generator(describe=b.describe_stage, layout=b.layout_stage, occupancy=b.occupancy_stage,
                         render=b.render_stage, multiview=b.multiview_stage if images == "diffusion" else None,
                         gaussians=b.gaussian_stage if self.gaussians_available else None, stride=b.stride)


@dataclass
class StageProgress:
    """One stage of a job: step of total, and state in waiting / running / done / skipped / cancelled / failed."""

    name: str
    step: int = 0
    total: int = 0
    state: str = "waiting"
    seconds: float = 0.0


@dataclass
class Job:
    """A piece of long work: label, its stages in order, its state (queued / running / done / cancelled /
    failed) and the message to show when it ends."""

    label: str
    stages: dict[str, StageProgress]
    state: str = "queued"
    message: str = ""
    started: float = field(default_factory=time.time)
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    generator: Generator | None = None

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


class JobContext:
    """What a job's function gets: the generator, a progress callback to pass to it and stage bookkeeping."""

    def __init__(self, job: Job, generator: Generator, on_change: Callable[[], None]) -> None:
        self.job = job
        self.gen = generator
        self._on_change = on_change
        self._stage_start: dict[str, float] = {}

    def progress(self, p: Progress) -> bool:
        """Generator progress callback: updates the stage's bar; False (cancel) once Cancel was pressed."""
        stage = self.job.stages.get(p.stage)
        if stage is not None:
            self._stage_start.setdefault(p.stage, time.time())
            stage.step, stage.total = p.step, p.total
            stage.state = "done" if p.step >= p.total else "running"
            stage.seconds = time.time() - self._stage_start[p.stage]
            self._on_change()
        return not self.job.cancel_event.is_set()

    def done(self, name: str, state: str = "done") -> None:
        """Mark a stage finished (or skipped) outside the generator's own reports."""
        stage = self.job.stages.get(name)
        if stage is not None:
            stage.state = state
            if state == "done":
                stage.step = stage.total = max(stage.total, 1)
            self._on_change()

    def check(self) -> None:
        """Raise GenerationCancelled between steps the generator does not report."""
        if self.job.cancel_event.is_set():
            raise GenerationCancelled("cancelled")


class Worker:
    """Runs one session's jobs, one at a time. on_change() is called whenever a job's record changes."""

    def __init__(self, pool: StagePool, on_change: Callable[[], None]) -> None:
        self.pool = pool
        self.on_change = on_change
        self.job: Job | None = None
        self._lock = threading.Lock()

    def start(self, label: str, stages: tuple[str, ...], fn: Callable[[JobContext], str],
              images: str = "preview", on_cancel: Callable[[Job, str, str], str | None] | None = None) -> Job:
        """Start `fn(ctx) -> message` in a thread. Raises RuntimeError when a job is already running.
        on_cancel(job, state, message) runs after a cancelled or failed job, before it counts as over (e.g. to
        roll back an unfinished operation); state is "cancelled" or "failed", and a str it returns replaces
        the job's message."""
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stages {unknown}")
        with self._lock:
            if self.job is not None and self.job.active:
                raise RuntimeError(f"'{self.job.label}' is still running: wait for it or press Cancel")
            job = Job(label, {s: StageProgress(s) for s in stages})
            self.job = job
        threading.Thread(target=self._run, args=(job, fn, images, on_cancel), name=f"xscene-job-{label}",
                         daemon=True).start()
        self.on_change()
        return job

    def cancel(self) -> bool:
        """Stop the running job after its current step; False when nothing runs."""
        job = self.job
        if job is None or not job.active:
            return False
        job.cancel_event.set()
        if job.state == "running" and job.generator is not None:
            job.generator.cancel()  # also interrupts the stage mid-step; safe: this job holds the compute lock
        return True

    def _run(self, job: Job, fn, images: str, on_cancel) -> None:
        state, message = "failed", f"{job.label} failed"
        try:
            with self.pool.lock:
                if job.cancel_event.is_set():
                    raise GenerationCancelled("cancelled before it started")
                job.generator = self.pool.generator(images)
                job.state = "running"
                job.started = time.time()
                self.on_change()
                message = fn(JobContext(job, job.generator, self.on_change))
                state = "done"
        except GenerationCancelled:
            state, message = "cancelled", f"{job.label}: cancelled. Finished stages are kept (Undo goes back)."
        except ValueError as err:  # bad input or an edit the model cannot apply: the message is for the user
            state, message = "failed", f"{job.label}: {err}"
        except Exception as err:  # a bug: keep the app alive, say what happened, log the trace
            traceback.print_exc()
            state, message = "failed", f"{job.label} failed: {type(err).__name__}: {err}"
        finally:
            if state != "done":
                self._mark(job, state)
                if on_cancel is not None:
                    # while it runs the job still counts as running, so no new job can start (and take its
                    # undo point) before the rollback is done
                    try:
                        message = on_cancel(job, state, message) or message
                    except Exception:
                        traceback.print_exc()
            job.message, job.finished = message, time.time()
            job.state = state  # published last: the job is over only once everything above is
            self.on_change()

    @staticmethod
    def _mark(job: Job, state: str) -> None:
        for s in job.stages.values():
            if s.state in ("waiting", "running"):
                s.state = state
