"""Pending layout edits: one undo step per edit, redo, and what a regeneration keeps."""

from __future__ import annotations

from dataclasses import replace

from app.pending import PendingEdits
from xscene_core.types.layout import Box, Layout


def layout(n: int) -> Layout:
    return Layout(boxes=tuple(Box((float(i), 0.0, 0.8), (4.5, 1.9, 1.6), 0.0, 4) for i in range(n)))


def test_each_edit_is_one_undo_step_and_redo_puts_it_back():
    p = PendingEdits()
    a, b, c = layout(1), layout(2), layout(3)
    p.set((0, 0), a, "car added")
    p.set((0, 0), b, "car_1 added")
    p.set((1, 0), c, "other chunk")
    assert dict(p) == {(0, 0): b, (1, 0): c} and p.history() == (["car added", "car_1 added", "other chunk"], [])
    assert p.undo() == "other chunk" and dict(p) == {(0, 0): b}
    assert p.undo() == "car_1 added" and dict(p) == {(0, 0): a}
    assert p.redo() == "car_1 added" and dict(p) == {(0, 0): b}
    assert p.history() == (["car added", "car_1 added"], ["other chunk"])
    # a new edit forgets what could be redone
    p.set((0, 0), c, "moved")
    assert p.redo() is None and p.history()[1] == []
    assert p.undo() == "moved" and p.undo() == "car_1 added" and p.undo() == "car added"
    assert len(p) == 0 and p.undo() is None


def test_a_regeneration_keeps_an_edit_made_while_it_ran():
    p = PendingEdits()
    first = layout(1)
    p.set((0, 0), first, "a")
    p.set((1, 0), layout(2), "b")
    applying = dict(p)
    newer = replace(first, boxes=first.boxes * 2)
    p.set((0, 0), newer, "c")            # the user edits on while the job runs
    for index, lay in applying.items():
        p.applied(index, lay)
    assert dict(p) == {(0, 0): newer}     # (1, 0) was applied; (0, 0) has a newer edit
    assert p.history() == ([], [])        # the applied steps belong to the world's history now
    p.applied((0, 0))
    assert len(p) == 0
