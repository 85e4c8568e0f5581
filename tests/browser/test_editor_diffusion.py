"""Browser flow with the shipped image diffusion model: a prompt becomes a chunk with generated camera
views, and extending it generates the neighbour's views continued from the chunk it grows from (slow)."""

from __future__ import annotations

import pytest

from xscene_core.stages.multiview import model_installed

from .ui import click, open_page, shot, tab, wait_job, wait_message

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not model_installed(), reason="no image diffusion checkpoint is installed")]
PROMPT = "a rainy night on a downtown crossroad with parked cars"


def test_diffusion_images_then_extend_continues_them(editor, chromium):
    page = open_page(chromium, editor.url)
    page.fill("#prompt textarea", PROMPT)
    page.locator("#images label", has_text="diffusion").click()
    click(page, "generate")
    assert wait_job(page) == "done", page.inner_text("#progress")
    assert "images: done" in page.inner_text("#progress")
    assert page.locator("#gallery img").count() >= 4  # semantic, depth, preview and the generated views
    shot(page, "diffusion_chunk")
    tab(page, "World")
    click(page, "extend-east")
    assert wait_job(page) == "done", page.inner_text("#message")
    wait_message(page, "Its camera images continue chunk_0_0's across the seam.")
    assert page.locator("#gallery img").count() >= 4
    shot(page, "diffusion_extended")
    page.close()
