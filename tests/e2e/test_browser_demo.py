"""A newcomer's first look, in a real browser: the demo stack, the login form, the demo project, a task that
opens with the model's predicted intent already selected, the same one Label Studio stores as its prediction.

Headless Debian Chromium (/usr/bin/chromium, or $CHROMIUM) driven by Playwright; no browser is downloaded.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from backend.commands.demo import SEEDS, Demo
from backend.labeling.parser import parse_spec

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# Label Studio's labeling interface renders each <Choice> as an antd checkbox (a radio for
# choice="single-radio") whose input carries the Choice's value (its display name) as `name`.
CHOICE_INPUTS = ".lsf-choices input[type=checkbox], .lsf-choices input[type=radio]"


@pytest.fixture
def demo(tmp_path):
    stack = Demo(port=0, run_dir=tmp_path / "demo", quiet=True, fake=True)
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: apt-get install -y chromium (`make test` does, as root: tools/system-deps)"
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


LABELS = parse_spec((SEEDS / "config.xml").read_text()).labels


def stored_prediction(demo: Demo, task_id: int) -> list[str]:
    """The display names of the choices in the task's one prediction, as Label Studio stores it."""
    (prediction,) = demo.api.list_predictions(task_id=task_id)
    names = {label.value: label.name for label in LABELS}  # stored values are aliases ("technical")
    return sorted(names[value] for region in prediction["result"] for value in region["value"]["choices"])


def test_a_task_opens_with_the_predicted_intent_selected(browser, demo, tmp_path):  # Chromium checked first
    task_id = demo.prelabeled[0]
    text = demo.api.get_task(task_id)["data"]["ticket"]
    predicted = stored_prediction(demo, task_id)
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.set_default_timeout(30_000)
    screenshot = tmp_path / "demo-task.png"
    try:
        page.goto(f"{demo.studio.url}/user/login/")
        page.fill("input[name=email]", demo.studio.username)
        page.fill("input[name=password]", demo.studio.password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/user/login" not in url)

        page.goto(f"{demo.studio.url}/projects/")
        page.get_by_text(demo.api.project(demo.project_id)["title"]).first.click()
        page.wait_for_url(f"**/projects/{demo.project_id}/data**")
        page.get_by_text(text, exact=True).first.click()  # the task's row in the data manager

        choices = page.locator(CHOICE_INPUTS)
        expect(choices).to_have_count(len(LABELS), timeout=30_000)  # the labeling interface has loaded
        for name in predicted:
            expect(page.locator(f".lsf-choices input[name={name!r}]")).to_be_checked()
        checked = sorted(box.get_attribute("name") for box in choices.all() if box.is_checked())
        assert checked == predicted, f"selected in the browser {checked}, stored prediction {predicted}"
        expect(page.get_by_text(text, exact=True).last).to_be_visible()
    finally:
        page.screenshot(path=str(screenshot))
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, ARTIFACTS / screenshot.name)


# Label Studio's Text tag draws each span region as a highlight element around the region's characters.
SPAN_HIGHLIGHTS = ".htx-highlight"


def test_a_task_opens_with_the_predicted_spans_highlighted(studio, env, browser, tmp_path):
    """A NER file from `label --format label-studio`, imported as it is: the task opens with its spans marked."""
    from tests.e2e.test_label_studio_format_e2e import DATA, NER_CONFIG, import_and_read_back, label_to_studio_file

    text = "Alice flew from Paris to Berlin with Lufthansa."
    tasks = label_to_studio_file(tmp_path, NER_CONFIG, DATA / "ner_export.json", [{"text": text}])
    (task,) = import_and_read_back(studio, "Spans in the browser", NER_CONFIG, tasks)
    (prediction,) = task["predictions"]
    expected = sorted(r["value"]["text"] for r in prediction["result"])
    assert expected == ["Alice", "Berlin", "Lufthansa", "Paris"]
    studio.api.rest("PATCH", f"/api/projects/{task['project']}/", json={"model_version": prediction["model_version"]})
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.set_default_timeout(30_000)
    screenshot = tmp_path / "span-task.png"
    try:
        page.goto(f"{studio.url}/user/login/")
        page.fill("input[name=email]", studio.username)
        page.fill("input[name=password]", studio.password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/user/login" not in url)
        page.goto(f"{studio.url}/projects/{task['project']}/data?task={task['id']}")
        highlights = page.locator(SPAN_HIGHLIGHTS)
        expect(highlights.first).to_be_visible(timeout=30_000)  # the labeling interface drew the regions
        expect(highlights).to_have_count(len(expected))
        shown = sorted(h.inner_text().strip() for h in highlights.all())
        assert shown == expected, f"highlighted in the browser {shown}, stored prediction {expected}"
    finally:
        page.screenshot(path=str(screenshot))
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, ARTIFACTS / screenshot.name)
