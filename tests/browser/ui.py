"""Small Playwright helpers for the editor page (element ids are set in app/page.py)."""

from __future__ import annotations

import time

from .conftest import JOB_TIMEOUT_MS, SHOTS

VIEWER_SETTLE_S = 8  # software WebGL in headless chromium needs a few seconds to draw the viser scene


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1500, "height": 1150})
    page.goto(url)
    page.wait_for_selector("#viewer iframe", timeout=60_000)
    page.wait_for_selector("#job-state", timeout=60_000)
    return page


def click(page, elem_id: str) -> None:
    page.click(f"#{elem_id}")


def wait_job(page) -> str:
    """Wait for the job the last click started to end (not the one before it, which a busy server may
    still show for a moment); returns its final state (done / cancelled / failed)."""
    last = _waited.get(id(page))
    page.wait_for_function(
        """last => { const e = document.querySelector('#job-state');
                     return e !== null && e.dataset.started !== undefined && e.dataset.started !== last
                            && ['done', 'failed', 'cancelled'].includes(e.dataset.state); }""",
        arg=last, timeout=JOB_TIMEOUT_MS, polling=300)
    page.wait_for_timeout(1200)  # and then shows the final message and pictures
    _waited[id(page)] = page.get_attribute("#job-state", "data-started")
    return page.get_attribute("#job-state", "data-state")


_waited: dict[int, str | None] = {}  # page -> the start stamp of the job it last waited for


def message(page) -> str:
    return page.inner_text("#message")


def wait_message(page, text: str, timeout_ms: int = 60_000) -> str:
    deadline = time.time() + timeout_ms / 1000
    while time.time() < deadline:
        m = message(page)
        if text in m:
            return m
        page.wait_for_timeout(300)
    raise AssertionError(f"message never said {text!r}; it says {message(page)!r}")


def pick(page, elem_id: str, index: int = 0) -> str:
    """Choose the index-th option of a Gradio dropdown; returns its text (without the check mark Gradio shows
    on the option already chosen)."""
    page.click(f"#{elem_id} input")
    options = page.locator(f"#{elem_id} li[role=option]")
    options.first.wait_for(timeout=10_000)
    text = options.nth(index).inner_text().replace("✓", "").strip()
    options.nth(index).click()
    page.wait_for_timeout(800)
    return text


def set_number(page, elem_id: str, value: float) -> None:
    page.fill(f"#{elem_id} input", str(value))


def shot(page, name: str, settle_s: float = VIEWER_SETTLE_S) -> None:
    page.wait_for_timeout(int(settle_s * 1000))
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()
    page.wait_for_timeout(400)
