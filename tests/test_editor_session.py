"""The editor session's flows without a browser or models: a stand-in generator fails, waits for Cancel
or succeeds at will, so what a stopped job leaves behind (the world, its history, the pending edits) and
what bad input gets are checked directly."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from app.editor import ORIGIN, EditorSession
from app.inputs import check_seed
from xscene_core.generator import DEFAULT_DESCRIPTION, GenerationCancelled, Generator
from xscene_core.types.layout import Box, Layout
from xscene_core.types.occupancy import GridSpec, Occupancy
from xscene_core.types.world import Chunk, WorldMap

from tests.browser.conftest import free_port

CAR = Box((5.0, 2.0, 0.8), (4.5, 1.9, 1.6), 0.0, 4, "parked", "car_0")


def _finished(layout: Layout) -> Chunk:
    return Chunk(np.eye(4), occupancy=Occupancy(np.full(GridSpec().shape, 17, np.uint8)), layout=layout,
                 description=DEFAULT_DESCRIPTION)


class StandInGenerator:
    """What the flows call on a Generator; from_layout does what the test says."""

    stride = 40.0
    new_world = Generator.new_world

    def __init__(self, from_layout) -> None:
        self._from_layout = from_layout
        self.cancelled = threading.Event()

    def from_layout(self, layout, description, seed, images, progress):
        return self._from_layout(self, layout)

    def edit(self, chunk, layout, seed, images, progress=None):
        assert self.cancelled.wait(20)  # the tests cancel every regeneration
        raise GenerationCancelled("cancelled")

    def cancel(self) -> None:
        self.cancelled.set()


class StandInPool:
    gaussians_available = False
    diffusion_available = False

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.from_layout = lambda gen, layout: _finished(layout)

    def generator(self, images: str = "preview") -> StandInGenerator:
        return StandInGenerator(self.from_layout)


@pytest.fixture
def es(tmp_path):
    pool = StandInPool()
    session = EditorSession(pool, tmp_path, viewer_port=free_port())
    first = _finished(Layout(boxes=(CAR,)))
    session.session.record("first chunk")
    session.session.set_world(Generator.new_world(StandInGenerator(None), first))
    yield session
    session.close()


def _wait(es: EditorSession, timeout: float = 30.0) -> str:
    t0 = time.time()
    while es.worker.job is None or es.worker.job.active:
        assert time.time() - t0 < timeout, "the job did not end"
        time.sleep(0.02)
    time.sleep(0.05)  # the worker's last callbacks
    return es.worker.job.state


def test_a_failed_layout_upload_leaves_the_world_its_history_and_pending_edits_as_they_were(es):
    chunk = es.world.chunks[ORIGIN]
    es.set_box(ORIGIN, 0, 8.0, 2.0, 0.0, 4.5, 1.9, 1.6, "car")      # a pending edit the upload clears
    history = es.session.history()

    def fail(gen, layout):
        raise ValueError("OccupancyStage: none of the layout's boxes lies inside the chunk")
    es.pool.from_layout = fail
    far = Layout(boxes=(Box((5000.0, 5000.0, 0.8), (4.5, 1.9, 1.6), 0.0, 4),))
    es.generate_from_layout(far, None, 0, "none", "far.json")
    assert _wait(es) == "failed"
    assert es.world.chunks[ORIGIN] is chunk and es.session.history() == history
    assert es.pending[ORIGIN].boxes[0].center[0] == 8.0
    assert "none of the layout's boxes" in es.message and "as it was before" in es.message
    es.undo()  # the pending edit first, then the first chunk: nothing of the upload is in between
    assert ORIGIN not in es.pending
    es.undo()
    assert es.world is None


def test_a_cancelled_layout_upload_leaves_the_world_as_it_was(es):
    chunk = es.world.chunks[ORIGIN]
    started = threading.Event()

    def wait_for_cancel(gen, layout):
        started.set()
        assert gen.cancelled.wait(20)
        raise GenerationCancelled("cancelled")
    es.pool.from_layout = wait_for_cancel
    es.generate_from_layout(Layout(boxes=(CAR,)), None, 0, "none", "upload.json")
    assert started.wait(20)
    assert es.world.chunks[ORIGIN] is not chunk                      # the draft shows while it runs
    with pytest.raises(RuntimeError, match="is running"):            # nor can Undo pull the rug
        es.undo()
    es.worker.cancel()
    assert _wait(es) == "cancelled"
    assert es.world.chunks[ORIGIN] is chunk and es.session.history()[0] == ["first chunk"]
    assert "cancelled before its chunk was finished" in es.message


def test_a_finished_upload_reports_its_layout_stage_and_empties_the_text(es):
    version = es.words_version
    es.generate_from_layout(Layout(boxes=(CAR,)), None, 0, "none", "upload.json")
    assert _wait(es) == "done"
    assert es.worker.job.stages["layout"].state == "done"
    assert es.words is None and es.words_version > version
    assert es.session.history()[0] == ["first chunk", "generate from upload.json"]


def test_an_edit_in_words_is_refused_while_the_chunk_has_pending_edits(es):
    es.set_box(ORIGIN, 0, 8.0, 2.0, 0.0, 4.5, 1.9, 1.6, "car")
    with pytest.raises(ValueError, match="Regenerate"):
        es.apply_intent("remove the nearest car", 0, "none")
    assert es.pending[ORIGIN].boxes[0].center[0] == 8.0


@pytest.mark.parametrize("fields, problem", [
    ((1e9, 2.0, 0.0, 4.5, 1.9, 1.6), "outside the chunk"),
    ((40.0, 2.0, 0.0, 4.5, 1.9, 1.6), "outside the chunk"),  # the upper bound belongs to the next chunk
    ((5.0, 2.0, 0.0, 1e7, 1.9, 1.6), "length of 1e\\+07 m is out of range"),
    ((5.0, 2.0, 0.0, 4.5, 1.9, 50.0), "height of 50 m is out of range"),
    ((float("nan"), 2.0, 0.0, 4.5, 1.9, 1.6), "outside the chunk|finite"),
    ((5.0, 2.0, float("nan"), 4.5, 1.9, 1.6), "heading|finite"),
])
def test_box_fields_out_of_range_are_refused_and_nothing_changes(es, fields, problem):
    with pytest.raises(ValueError, match=problem):
        es.set_box(ORIGIN, 0, *fields, "car")
    assert ORIGIN not in es.pending
    with pytest.raises(ValueError, match="outside the chunk"):
        es.add_box(ORIGIN, "car", 60.0, 0.0)
    assert ORIGIN not in es.pending


def test_a_box_on_the_lower_bound_of_the_chunk_is_in_it(es):
    es.set_box(ORIGIN, 0, -40.0, -40.0, 0.0, 4.5, 1.9, 1.6, "car")
    assert tuple(es.pending[ORIGIN].boxes[0].center[:2]) == (-40.0, -40.0)


def test_seeds_and_description_values_are_checked_before_anything_starts(es):
    assert check_seed(7) == 7 and check_seed(2**31 - 1) == 2**31 - 1 and check_seed(None) == 0 and check_seed(5.0) == 5
    for bad in (-5, 2**31, 99999999999999999999, 2.5, "x"):
        with pytest.raises(ValueError, match="seed"):
            check_seed(bad)
    with pytest.raises(ValueError, match="seed"):
        es.generate("a street", 99999999999999999999, "none")
    description = dict(DEFAULT_DESCRIPTION.to_json_dict(), **{"Time of the day": 5})
    with pytest.raises(ValueError, match='"Time of the day" is \'5\': use one of dawn'):
        es.generate_from_text(json.dumps(description), "", 0, "none")
    assert es.worker.job is None and es.session.history()[0] == ["first chunk"]


def test_undo_and_redo_say_when_there_is_nothing_to_do(es):
    es.redo()
    assert es.message == "Nothing to redo."
    es.undo()
    es.undo()
    assert es.message == "Nothing to undo."


def test_a_regeneration_cancelled_before_it_changed_the_world_leaves_no_undo_step(es):
    chunk = es.world.chunks[ORIGIN]
    es.set_box(ORIGIN, 0, 8.0, 2.0, 0.0, 4.5, 1.9, 1.6, "car")
    es.regenerate(0, "none")
    es.worker.cancel()
    assert _wait(es) == "cancelled"
    assert es.world.chunks[ORIGIN] is chunk and es.session.history()[0] == ["first chunk"]
    assert es.pending[ORIGIN].boxes[0].center[0] == 8.0           # the edit is still there to regenerate
    assert es.message.endswith("cancelled; the world is unchanged.")


def test_a_stopped_job_counts_as_running_until_its_rollback_is_done():
    from app.jobs import Worker

    worker, seen = Worker(StandInPool(), lambda: None), []

    def fail(ctx):
        raise ValueError("no such thing")

    def rollback(job, state, message):
        with pytest.raises(RuntimeError, match="still running"):  # no job can slip in and take its undo point
            worker.start("second", (), lambda ctx: "second done")
        seen.append((state, job.active, message))
        return "rolled back"

    job = worker.start("first", (), fail, on_cancel=rollback)
    t0 = time.time()
    while job.active:
        assert time.time() - t0 < 20
        time.sleep(0.01)
    assert seen == [("failed", True, "first: no such thing")]
    assert job.state == "failed" and job.message == "rolled back"


def test_added_boxes_get_free_ids_and_styles_are_checked_in_any_case(es):
    from app.inputs import check_description_style
    from dataclasses import replace

    first = es.add_box(ORIGIN, "car", 10.0, 5.0)
    second = es.add_box(ORIGIN, "car", 14.0, 5.0)
    es.delete_box(ORIGIN, first)
    third = es.add_box(ORIGIN, "car", 18.0, 5.0)
    ids = [b.track_id for b in es.layouts()[ORIGIN].boxes]
    assert len(set(ids)) == len(ids) == 3 and ids[third] == "user_0"  # the deleted one's id, not a copy of user_1
    assert ids[second - 1] == "user_1"
    check_description_style(replace(DEFAULT_DESCRIPTION, time_of_day="Night", weather="RAINY"))
    with pytest.raises(ValueError, match='"Weather" is \'drizzle\''):
        check_description_style(replace(DEFAULT_DESCRIPTION, weather="drizzle"))


def test_a_box_is_painted_from_its_fields_and_an_unknown_paint_is_refused(es):
    from dataclasses import replace

    es.set_box(ORIGIN, 0, 5.0, 2.0, 0.0, 4.5, 1.9, 1.6, "car", "red")
    assert es.pending[ORIGIN].boxes[0].color == "red"
    es.set_box(ORIGIN, 0, 6.0, 2.0, 0.0, 4.5, 1.9, 1.6, "car")          # no paint given: kept
    assert es.pending[ORIGIN].boxes[0].color == "red"
    es.set_box(ORIGIN, 0, 6.0, 2.0, 0.0, 4.5, 1.9, 1.6, "car", "")      # "unstated"
    assert es.pending[ORIGIN].boxes[0].color == ""
    with pytest.raises(ValueError, match="paint 'plaid' is not one of"):
        es.set_box(ORIGIN, 0, 6.0, 2.0, 0.0, 4.5, 1.9, 1.6, "car", "plaid")
    assert es.pending[ORIGIN].boxes[0].center[0] == 6.0 and es.pending[ORIGIN].boxes[0].color == ""
    # a colour the list lacks (an LLM's "purple") survives an apply of the other fields
    layout = es.pending[ORIGIN]
    es.pending.set(ORIGIN, replace(layout, boxes=(replace(layout.boxes[0], color="purple"),) + layout.boxes[1:]), "x")
    es.set_box(ORIGIN, 0, 7.0, 2.0, 0.0, 4.5, 1.9, 1.6, "car", "")
    assert es.pending[ORIGIN].boxes[0].color == "purple"
    es.set_box(ORIGIN, 0, 7.0, 2.0, 0.0, 0.6, 0.6, 1.8, "pedestrian", "")  # a new class starts unstated
    assert es.pending[ORIGIN].boxes[0].color == ""


def test_a_paint_only_apply_keeps_the_box_where_it_was(es):
    """The page shows rounded fields; applying them unchanged with a new paint must not move the box by
    the rounding (which would count as a geometry change and resample the voxels around it)."""
    from dataclasses import replace

    from app.editor import box_fields
    from xscene_core.ops.layout_diff import layout_change

    layout = es.layouts()[ORIGIN]
    odd = replace(layout.boxes[0], center=(5.1234, 2.0066, 0.9137), size=(4.5123, 1.9049, 1.6133), yaw=1.54773)
    es.pending.set(ORIGIN, replace(layout, boxes=(odd,) + layout.boxes[1:]), "odd box")
    before = es.pending[ORIGIN]
    es.set_box(ORIGIN, 0, *box_fields(odd)[:7], "red")  # (radians(degrees(1.54773)) is not 1.54773)
    after = es.pending[ORIGIN]
    assert after.boxes[0].color == "red" and after.boxes[0].center == odd.center and after.boxes[0].size == odd.size
    assert after.boxes[0].yaw == odd.yaw
    assert not layout_change(before, after).boxes
    # a field the user changed takes the typed value, the others stay exact
    es.set_box(ORIGIN, 0, 6.0, *box_fields(odd)[1:7], "red")
    moved = es.pending[ORIGIN].boxes[0]
    assert moved.center == (6.0, odd.center[1], odd.center[2]) and moved.size == odd.size and moved.yaw == odd.yaw
