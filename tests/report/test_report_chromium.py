"""Render the report in headless Chromium: the charts draw, and the page's numbers equal metrics.json.

``make test`` installs Debian's ``chromium`` when it is missing; without it these tests skip.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from recsys_peft.report import write_report
from tests.report.test_report_html import check_numbers, parse

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1000, 2400


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed; `make test` installs it with apt-get")
    # --no-sandbox: the sandbox cannot start as root, which is how CI containers run.
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture
def page(work_dir: Path) -> Path:
    return write_report(work_dir)


def test_numbers_after_rendering(page, work_dir, tmp_path):
    metrics = json.loads((work_dir / "metrics.json").read_text())

    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout

    parsed = parse(dom)
    assert parsed.svg_ids == ["chart-segment-ndcg", "chart-train-loss", "chart-valid-ndcg"]
    assert len(parsed.values) >= 2 * len(metrics["segments"]) + 4
    check_numbers(parsed, metrics)


def test_screenshot_has_content(page, tmp_path):
    shot = tmp_path / "report.png"

    chromium(tmp_path, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars",
             page.as_uri())

    with Image.open(shot) as image:
        rgb = image.convert("RGB")
    colours = rgb.getcolors(maxcolors=WIDTH * HEIGHT)
    assert rgb.size == (WIDTH, HEIGHT)
    # A blank page has one colour; text and bars give many.
    assert len(colours) > 50
    # Both series of the segment chart are drawn: Okabe-Ito blue (base) and orange (adapted).
    drawn = {colour for _, colour in colours}
    assert (0x00, 0x72, 0xB2) in drawn
    assert (0xE6, 0x9F, 0x00) in drawn
