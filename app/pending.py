"""Layout edits not yet regenerated, with their own undo and redo.

The world's history (xscene_core.session) records what a job changed; the edits a user makes to boxes and
lanes before pressing Regenerate live here, one step per edit, so that Undo takes back the last box drag
instead of throwing every pending edit away.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from xscene_core.types.layout import Layout
from xscene_core.types.world import ChunkIndex


class PendingEdits(Mapping):
    """chunk index -> its edited Layout (read-only mapping); `set` adds one edit step, `undo` / `redo` walk
    the steps back and forth, `clear` forgets them all (the edits were applied or discarded)."""

    def __init__(self) -> None:
        self._layouts: dict[ChunkIndex, Layout] = {}
        self._undo: list[tuple[dict[ChunkIndex, Layout], str]] = []  # (layouts before the step, its note)
        self._redo: list[tuple[dict[ChunkIndex, Layout], str]] = []  # (layouts after the step, its note)

    def __getitem__(self, index: ChunkIndex) -> Layout:
        return self._layouts[index]

    def __iter__(self) -> Iterator[ChunkIndex]:
        return iter(self._layouts)

    def __len__(self) -> int:
        return len(self._layouts)

    def set(self, index: ChunkIndex, layout: Layout, note: str) -> None:
        """One edit step: chunk `index` now has `layout`; `note` says what changed (shown by undo / redo)."""
        self._undo.append((dict(self._layouts), note))
        self._redo.clear()
        self._layouts[index] = layout

    def undo(self) -> str | None:
        """Take back the last edit step; its note, or None when there is none."""
        if not self._undo:
            return None
        before, note = self._undo.pop()
        self._redo.append((dict(self._layouts), note))
        self._layouts = before
        return note

    def redo(self) -> str | None:
        """Put back the last step taken back; its note, or None when there is none."""
        if not self._redo:
            return None
        after, note = self._redo.pop()
        self._undo.append((dict(self._layouts), note))
        self._layouts = after
        return note

    def history(self) -> tuple[list[str], list[str]]:
        """(notes of the steps undo would take back, oldest first; notes redo would put back, likewise)."""
        return [n for _, n in self._undo], [n for _, n in self._redo]

    def applied(self, index: ChunkIndex, layout: Layout | None = None) -> None:
        """Chunk `index` was regenerated (with `layout`): drop its pending edit if it is still that one (a
        newer edit made while the job ran stays pending; None drops any), and forget the steps, which the
        world's history now holds."""
        if index in self._layouts and (layout is None or self._layouts[index] is layout):
            del self._layouts[index]
        self._undo.clear()
        self._redo.clear()

    def copy(self) -> "PendingEdits":
        """A copy whose edits and steps later calls on this one do not change (the layouts themselves are
        immutable and shared), to put back if a job that cleared them stops."""
        other = PendingEdits()
        other._layouts, other._undo, other._redo = dict(self._layouts), list(self._undo), list(self._redo)
        return other

    def clear(self) -> None:
        self._layouts.clear()
        self._undo.clear()
        self._redo.clear()
