"""Browser tests of the editor's flows (slow: each generates or regenerates chunks on the CPU). One page
is generated once and the flows continue on it: edit a box and regenerate, undo pending edits one by one,
select a lane (its handles show), extend twice, roam, save,
restart the server and load; then two sessions side by side."""

from __future__ import annotations

import pytest

from .conftest import EditorProcess
from .ui import click, open_page, pick, set_number, shot, tab, wait_job, wait_message

pytestmark = pytest.mark.slow
PROMPT = "a sunny suburban street with parked cars"


@pytest.fixture(scope="module")
def page(editor, chromium):
    p = open_page(chromium, editor.url)
    p.fill("#prompt textarea", PROMPT)
    click(p, "generate")
    assert wait_job(p) == "done", p.inner_text("#progress")
    yield p
    p.close()


def test_edit_a_box_then_regenerate(page):
    tab(page, "Edit")
    chosen = pick(page, "box", 0)
    x = float(page.input_value("#box-x input"))
    set_number(page, "box-x", round(x + 3.0, 2))
    click(page, "apply-box")
    wait_message(page, "press Regenerate")
    shot(page, "edit_box_pending", settle_s=4)
    click(page, "regenerate")
    assert wait_job(page) == "done", page.inner_text("#progress")
    assert "Regenerated" in page.inner_text("#message") and "regenerated" in page.inner_text("#message")
    assert f"({x + 3.0:.1f}," in page.locator("#box").inner_text() or chosen.split(":")[0] in pick(page, "box", 0)
    shot(page, "edit_box_regenerated")


def test_a_deleted_car_leaves_the_description(page):
    """Delete a car, regenerate: the description tab counts one car fewer (its captions name no deleted car)."""
    import re

    def cars() -> int:
        tab(page, "Description & graph")
        text = page.inner_text("#description .cm-content")
        return sum(int(n) for n in re.findall(r'"(\d+) [a-z ]*?cars?"', text))

    before = cars()
    assert before >= 1
    tab(page, "Edit")
    chosen = next(name for name in (pick(page, "box", k) for k in range(40)) if ": car" in name)  # by track id
    click(page, "delete-box")
    wait_message(page, "press Regenerate")
    click(page, "regenerate")
    assert wait_job(page) == "done", page.inner_text("#progress")
    assert cars() == before - 1, chosen
    shot(page, "description_after_delete", settle_s=1)


def test_a_car_painted_red_comes_back_red(page):
    """Pick a car, paint it red, regenerate: the regenerated chunk's box is red (its Paint field reads the
    chunk's layout; the preview look and the image model paint a vehicle from its box)."""
    from app.page import PAINT_CHOICES

    tab(page, "Edit")
    chosen = next(name for name in (pick(page, "box", k) for k in range(40)) if ": car" in name)
    red = [value for _, value in PAINT_CHOICES].index("red")
    assert pick(page, "box-paint", red) == "red"
    click(page, "apply-box")
    wait_message(page, "press Regenerate")
    click(page, "regenerate")
    assert wait_job(page) == "done", page.inner_text("#progress")
    pick(page, "box", int(chosen.split(":")[0]))
    assert page.input_value("#box-paint input") == "red", chosen
    shot(page, "car_painted_red", settle_s=4)


def test_pending_edits_undo_one_at_a_time_and_lane_handles(page):
    tab(page, "Edit")
    pick(page, "box", 0)
    x = float(page.input_value("#box-x input"))
    for dx in (1.0, 2.0):
        set_number(page, "box-x", round(x + dx, 2))
        click(page, "apply-box")
        wait_message(page, "press Regenerate")
    tab(page, "World")
    click(page, "undo")
    wait_message(page, "(1 chunk(s) edited, not regenerated yet)")  # the second edit went, the first stays
    tab(page, "Edit")
    assert abs(float(page.input_value("#box-x input")) - (x + 1.0)) < 0.05
    tab(page, "World")
    click(page, "undo")
    wait_message(page, "changed'.")                                  # the first went too: nothing pending
    assert "to regenerate" not in page.inner_text("#history")
    tab(page, "Edit")
    assert abs(float(page.input_value("#box-x input")) - x) < 0.05
    pick(page, "lane", 0)
    shot(page, "lane_handles", settle_s=4)                             # the selected lane with its three handles


def test_extend_twice_then_roam(page):
    tab(page, "World")
    click(page, "extend-east")
    assert wait_job(page) == "done", page.inner_text("#message")
    click(page, "extend-east")  # the new chunk is selected, so the world keeps growing east
    assert wait_job(page) == "done", page.inner_text("#message")
    assert "the world has 3 chunks" in page.inner_text("#message")
    shot(page, "extend_twice")
    click(page, "roam")
    wait_message(page, "Roaming", timeout_ms=600_000)
    shot(page, "roam", settle_s=12)
    click(page, "edit-mode")
    wait_message(page, "Edit mode")


def test_undo_redo_save_restart_load(page, editor, chromium):
    tab(page, "World")
    click(page, "undo")
    wait_message(page, "Undid 'extend east of chunk_1_0'")
    click(page, "redo")
    wait_message(page, "Redid")
    page.fill("#save-name :is(input, textarea)", "three_chunks")
    click(page, "save")
    wait_message(page, "Saved the world as 'three_chunks' (3 chunk(s))")
    editor.stop()
    editor.start()  # a new process on the same data folder
    fresh = open_page(chromium, editor.url)
    tab(fresh, "World")
    pick(fresh, "load-name", 0)
    click(fresh, "load")
    wait_message(fresh, "Loaded 3 chunk(s) from three_chunks")
    shot(fresh, "loaded_after_restart")
    fresh.close()


def test_two_sessions_are_isolated(tmp_path, chromium):
    proc = EditorProcess(tmp_path).start()
    try:
        a = chromium.new_context().new_page()
        b = chromium.new_context().new_page()
        for p in (a, b):
            p.set_viewport_size({"width": 1500, "height": 1150})
            p.goto(proc.url)
            p.wait_for_selector("#viewer iframe", timeout=60_000)
        src_a, src_b = (p.get_attribute("#viewer iframe", "src") for p in (a, b))
        assert src_a != src_b  # one viewer (viser server) per session
        a.fill("#prompt textarea", "a foggy morning on a rural road with a truck ahead")
        click(a, "generate")
        assert wait_job(a) == "done"
        tab(a, "Edit")
        tab(b, "Edit")
        assert "chunk_0_0" in a.locator("#chunk").inner_text() or a.input_value("#chunk input") == "chunk_0_0"
        assert b.input_value("#chunk input") == ""  # B has no world
        assert b.get_attribute("#job-state", "data-state") == "idle"
        assert "Type a prompt" in b.inner_text("#message")
        shot(a, "session_a")
        shot(b, "session_b")
    finally:
        proc.stop()
