"""Headless Chromium (Debian's, not a Playwright download) driven by Playwright; page helpers."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

ARGS = (
    "--headless=new",
    "--no-sandbox",  # root in CI containers; the page is our own, on loopback
    "--disable-gpu",
    "--disable-background-networking",  # the closed network refuses Google's hosts
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
ARTIFACTS = Path(os.environ.get("PAIRWATCH_TEST_ARTIFACTS", "test-artifacts")).resolve()


def chromium_path() -> str:
    """Return the system Chromium; fail with what to install when it is missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "chromium is not installed: run scripts/system-deps as root, or "
            "sudo apt-get install chromium"
        )
    return found


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def artifact(name: str) -> Path:
    """Return where a test artifact (a screenshot, a download) is kept after the run."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


async def wait_drawn(page: Page, rows: int | None = None, timeout_ms: float = 30_000) -> int:
    """Wait until the page says it drew a series (with ``rows`` bars); return its bar count."""
    shown = page.locator(".pw-shown")
    if rows is None:
        await shown.wait_for(timeout=timeout_ms)
    else:
        await page.locator(f".pw-shown[data-rows='{rows}']").wait_for(timeout=timeout_ms)
    return int(await shown.get_attribute("data-rows") or -1)


async def line_values(page: Page, name: str) -> dict[str, list[float]]:
    """Return the (t, v) points the browser holds for one chart line (``pw-zscore-0`` …)."""
    values: dict[str, list[float]] = await page.evaluate(
        """name => {
            const model = Bokeh.documents[0].get_model_by_name(name);
            const data = model.data_source.data;
            return {t: Array.from(data.t), v: Array.from(data.v)};
        }""",
        name,
    )
    return values


async def painted_canvases(page: Page) -> list[int]:
    """Return, per chart canvas, how many of its pixels are painted (not transparent)."""
    counts: list[int] = await page.locator("canvas").evaluate_all(
        """canvases => canvases.map(c => {
            if (!c.width || !c.height) return 0;
            const ctx = c.getContext('2d');
            if (!ctx) return 0;
            const px = ctx.getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) n++;
            return n;
        })"""
    )
    return counts


async def select(page: Page, css_class: str, value: Any) -> None:
    """Choose ``value`` in the Panel Select with ``css_class``."""
    await page.locator(f".{css_class} select").select_option(str(value))
