"""Browser smoke test in the default run: the page starts fast, a prompt becomes a full chunk (every stage
finished, the camera views shown), and a bad upload gets a clear message with nothing lost."""

from __future__ import annotations

from .ui import click, open_page, shot, tab, wait_job, wait_message

PROMPT = "a rainy night on a downtown crossroad with parked cars"


def test_cold_start_is_quick(editor):
    assert editor.startup_s < 30, f"the page took {editor.startup_s:.1f} s to come up"


def test_prompt_to_full_chunk_then_bad_upload(editor, chromium, tmp_path):
    page = open_page(chromium, editor.url)
    page.fill("#prompt textarea", PROMPT)
    click(page, "generate")
    assert wait_job(page) == "done", page.inner_text("#progress")
    bars = page.inner_text("#progress")
    for stage in ("describe", "layout", "occupancy", "render", "images", "gaussians"):
        assert f"{stage}: done" in bars or f"{stage}: skipped" in bars, bars
    assert "Chunk ready" in page.inner_text("#message")
    assert page.locator("#gallery img").count() >= 3  # semantic, depth, preview mosaics
    tab(page, "Description & graph")
    assert "Time of the day" in page.inner_text("#description")
    assert page.input_value("#graph textarea").strip()
    shot(page, "prompt_full_chunk")

    bad = tmp_path / "layout.json"
    bad.write_text("this is not json {")
    tab(page, "Layout")
    page.set_input_files("#layout-file input[type=file]", str(bad))
    page.wait_for_timeout(1500)
    click(page, "from-layout")
    wait_message(page, "is not a JSON file")
    assert page.get_attribute("#job-state", "data-state") == "done"  # the chunk is still there, nothing started
    shot(page, "bad_upload", settle_s=1)
    page.close()


def test_the_editor_prints_every_threads_stack_on_request_and_goes_on(editor):
    """SIGUSR1 (launch.editor): what a failed browser test attaches to its report."""
    import urllib.request

    log = editor.stacks()
    assert "most recent call first" in log and "Thread 0x" in log
    assert editor.proc.poll() is None, "the editor keeps running"
    with urllib.request.urlopen(editor.url, timeout=30) as r:
        assert r.status == 200
