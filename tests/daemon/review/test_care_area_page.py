"""The review station draws a line's care area: ``/api/care-area.png`` serves it (404 where the whole frame counts),
and the page, in headless Chromium, lays it over the heatmap half of the picture only, never over the frame half."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from daemon.config import load_config
from daemon.review.app import station_app
from daemon.review.server import Listen, serving_in_thread

from ..conftest import LINE
from .test_station_browser import CHROMEDRIVER, CHROMIUM, Page, browser, wait_for  # noqa: F401 - browser: fixture
from .test_web import OTHER, Client, Plant, plant  # noqa: F401 - plant: fixture

CARE = {"MUSC_CAMERA__CARE_POLYGONS": "[[[0, 0], [15, 0], [15, 31], [0, 31]]]", "MUSC_CAMERA__FRAME_SIZE": "[32, 32]"}


@pytest.fixture
def station(plant: Plant) -> Iterator[str]:  # noqa: F811 - the fixture imported above
    """The open station over the plant's store; line 3 has a care area (the left half of its 32 px frames), line 4
    none."""

    def configs(line: int):
        return load_config(line, env={**plant.env, **(CARE if line == LINE else {})})

    app = station_app(plant.store, configs, LINE, "ana")
    with serving_in_thread(app, Listen("127.0.0.1")) as base:
        yield base


def test_the_care_area_is_served_as_a_veil_and_a_line_without_one_answers_404(station):
    client = Client(station)
    status, veil, headers = client.call(f"/api/care-area.png?line={LINE}")
    assert status == 200 and headers.get_content_type() == "image/png"
    alpha = np.asarray(Image.open(io.BytesIO(veil)))[..., 3]
    assert alpha.shape == (32, 32) and alpha[16, 15] == 255 and alpha[16, 8] == 0 and alpha[16, 24] > 100
    status, answer, _ = client.call(f"/api/care-area.png?line={OTHER}")
    assert (status, answer) == (404, {"error": "no care area on that line: the whole frame counts"})
    assert client.call("/api/care-area.png?line=99")[0] == 404


@pytest.mark.slow
@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)
def test_the_page_lays_the_care_area_over_the_heatmap_half_only(station, browser):  # noqa: F811 - the fixture
    page = Page(browser)
    browser.get(station + "/")
    wait_for(lambda: {"first", "l4-a"} <= set(page.all("#queue li", "data-frame")), "the queue")
    pick = "[...document.querySelectorAll('#queue li')].find(li => li.dataset.frame === arguments[0]).click()"
    browser.execute_script(pick, "first")  # line 3's frame with a picture
    wait_for(lambda: page.visible("care"), "line 3's care area over its picture")
    assert page.visible("care-note")
    boxes = browser.execute_script(
        "const box = (id) => { const r = document.getElementById(id).getBoundingClientRect(); "
        "return [r.left, r.top, r.width, r.height]; }; "
        "return { picture: box('picture'), care: box('care'), loaded: document.getElementById('care').naturalWidth }"
    )
    left, top, width, height = boxes["picture"]
    assert width >= 200 and boxes["loaded"] == 32  # drawn at the column's width, the veil loaded
    assert boxes["care"] == pytest.approx([left + width / 2, top, width / 2, height], abs=1)  # the heatmap half

    browser.execute_script(pick, "l4-a")
    wait_for(lambda: page.text("frame") == "l4-a", "line 4's frame")
    wait_for(lambda: not page.visible("care"), "no care area drawn for line 4")
    assert not page.visible("care-note")
