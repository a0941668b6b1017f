"""The web page in a real browser: Debian's Chromium driven by Playwright (launched from
/usr/bin/chromium, never downloaded), against the running app with the tiny model. Upload a
generated video, ask: the answer streams in (its text grows), the frames strip shows one
thumbnail per sampled frame at the right times, a click seeks the player; a bad file shows the
service's message; a summary job shows progress and chapters. A screenshot of each step is
saved under test-results/screenshots/."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    CONFIG_KEY,
    OLLAMA_ONLY_PREFIX,
    VIDEO_FPS,
    VIDEO_FRAMES,
    Media,
)
from tests.support.videos import write_h264

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-results" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def three_minutes(media: Media) -> Path:
    return write_h264(media.local_dir / "web-three-minutes.mp4", 360, 2.0, (160, 120), gop=20)


@pytest.fixture(scope="module")
def page(serve_url: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            "chromium is not installed: `make setup-dev` as root, or apt-get install chromium"
        )
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        tab = browser.new_page(viewport={"width": 1100, "height": 1000})
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        missing: list[str] = []  # the page's own files that 404 (a favicon did)
        tab.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
        tab.goto(f"{serve_url}/")
        yield tab
        browser.close()
        assert not errors, f"the page threw: {errors}"
        assert not missing, f"the page asked for files that are not there: {missing}"


def test_upload_ask_stream_and_frames(page: object, media: Media) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.set_input_files("#file", str(media.local_dir / "clip.mp4"))
    expect(page.locator("#player")).to_be_visible()
    page.screenshot(path=SHOTS / "1-uploaded.png")
    page.click("#options summary")
    page.fill("#num-frames", "4")
    page.fill("#question", "What happens in this clip?")
    page.click("#ask-button")
    lengths = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and page.locator("#frames .thumb").count() == 0:
        lengths.add(len(page.inner_text("#answer")))
        time.sleep(0.05)
    page.screenshot(path=SHOTS / "2-answered.png")
    # The page appends each streamed piece as it is parsed (on a fast engine every piece may
    # arrive in one network read, so growth seen by polling is not required: the pieces are).
    pieces = int(page.get_attribute("#answer", "data-pieces") or 0)
    assert pieces >= 2, f"the answer came in {pieces} piece(s); lengths seen {sorted(lengths)}"
    expect(page.locator("#backend")).to_contain_text("answered by vllm")
    thumbs = page.locator("#frames .thumb")
    expect(thumbs).to_have_count(4)
    times = [float(thumbs.nth(i).get_attribute("data-t") or "nan") for i in range(4)]
    duration = VIDEO_FRAMES / VIDEO_FPS
    assert times == sorted(times)
    assert times[0] == pytest.approx(0.0, abs=0.11)
    assert times[-1] == pytest.approx(duration - 1 / VIDEO_FPS, abs=0.11)
    # Every thumbnail is drawn once its seek landed, the first (0:00.0) too: a seek to where a
    # fresh copy already is fires no `seeked`, and the old page drew the 0:00 one after a 2 s
    # timeout, blank in screenshots.
    landed = [thumbs.nth(i).get_attribute("data-seeked") for i in range(4)]
    assert landed == ["true"] * 4, landed
    drawn = page.evaluate(
        "() => [...document.querySelectorAll('#frames canvas')].map((c) => "
        "c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
        ".filter((_, i) => i % 4 === 3 && _ > 0).length)"
    )
    assert all(count > 0 for count in drawn), f"opaque pixels per thumbnail: {drawn}"
    thumbs.nth(2).click()
    seeked = float(page.get_attribute("#player", "data-seeked-to") or "nan")
    assert seeked == times[2]
    page.screenshot(path=SHOTS / "3-frames.png")


def test_a_bad_file_shows_the_services_message(page: object, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    bad = tmp_path / "notes.mp4"
    bad.write_bytes(b"just some text\n" * 100)
    page.set_input_files("#file", str(bad))
    page.fill("#question", "What is this?")
    page.click("#ask-button")
    error = page.locator("#error")
    expect(error).to_be_visible(timeout=60_000)
    expect(error).to_contain_text("is not a video")
    expect(error).to_contain_text("422 unsupported_media")
    assert "Traceback" not in error.inner_text()
    page.screenshot(path=SHOTS / "4-bad-file.png")


def test_a_summary_job_shows_progress_and_chapters(page: object, three_minutes: Path) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.set_input_files("#file", str(three_minutes))
    page.click("#summarize")
    expect(page.locator("#job-progress")).to_be_visible(timeout=60_000)
    page.screenshot(path=SHOTS / "5-job-progress.png")
    expect(page.locator("#job-state")).to_have_text("succeeded", timeout=180_000)
    # Each chunk's caption was shown as it came (a quick job's chapters replace them before a
    # test could look: the page counts what it showed).
    assert page.get_attribute("#chapters", "data-captions-shown") == "6"
    chapters = page.locator("#chapters li.chapter")
    assert chapters.count() >= 1
    assert chapters.first.get_attribute("data-start") == "0"
    assert float(page.get_attribute("#job-progress", "value") or 0) == 6  # 6 chunks of 30 s
    chapters.last.click()
    assert page.get_attribute("#player", "data-seeked-to") == chapters.last.get_attribute(
        "data-start"
    )
    page.screenshot(path=SHOTS / "6-chapters.png", full_page=True)


def test_a_follow_up_question_reuses_the_frames_and_the_library_search_opens_a_result(
    page: object, media: Media, serve_url: str
) -> None:
    import httpx
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.set_input_files("#file", str(media.local_dir / "clip.mp4"))
    for question in ("What is shown?", "And then?"):
        page.fill("#question", question)
        page.click("#ask-button")
        expect(page.locator("#frames .thumb")).to_have_count(4, timeout=120_000)
    expect(page.locator("#backend")).to_contain_text("frames from the cache")

    # A job whose caption is known (the tiny model's own are noise): structured output.
    schema = {"type": "object", "properties": {"caption": {"enum": ["a heron fishing"]}},
              "required": ["caption"]}  # fmt: skip
    created = httpx.post(
        f"{serve_url}/v1/video/jobs",
        json={"url": (media.local_dir / "clip.mp4").as_uri(), "task": "captions",
              "response_format": {"type": "json_schema",
                                  "json_schema": {"name": "c", "schema": schema}}},
    )  # fmt: skip
    assert created.status_code == 202, created.text
    with httpx.stream("GET", f"{serve_url}{created.headers['location']}/events", timeout=120) as r:
        assert "event: done" in "".join(r.iter_text())
    word = "heron"
    page.fill("#search-q", word)
    page.click("#search-button")
    expect(page.locator("#search-results li").first).to_be_visible(timeout=30_000)
    page.screenshot(path=SHOTS / "7-search.png")

    # By meaning: no word in common with "a heron fishing"; a thumbnail of each result; a
    # click opens that job's video at the result's time, and a question goes to that job.
    job_id = created.json()["id"]
    page.fill("#search-q", "a bird hunting in a pond")
    page.click("#search-button")
    results = page.locator("#search-results")
    expect(results).to_have_attribute("data-query", "a bird hunting in a pond", timeout=30_000)
    mine = page.locator(f'#search-results li[data-job="{job_id}"]').first
    expect(mine).to_be_visible(timeout=30_000)
    assert mine.get_attribute("data-match") == "semantic"
    expect(mine.locator("img")).to_have_attribute("data-loaded", "true", timeout=60_000)
    width = mine.locator("img").evaluate("image => image.naturalWidth")
    assert width > 0
    mine.click()
    expect(page.locator("#player")).to_have_attribute("data-job", job_id)
    expect(page.locator("#player")).to_have_attribute(
        "data-seeked-to", mine.get_attribute("data-start") or "", timeout=30_000
    )
    page.screenshot(path=SHOTS / "8-library-search.png", full_page=True)
    page.fill("#question", "What is the bird doing?")
    page.click("#ask-button")
    expect(page.locator("#answer")).not_to_be_empty(timeout=120_000)
    expect(page.locator("#error")).to_be_hidden()


def test_the_api_key_is_kept_for_the_session_and_sent(
    page: object, serve_url: str, media: Media
) -> None:
    """The keyed app, under its route prefix, in a fresh browser context: without a key the
    service's 401 message shows; with it typed in, the question is answered (by its Ollama
    stand-in)."""
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    browser = page.context.browser
    assert browser is not None
    context = browser.new_context()
    keyed = context.new_page()
    keyed.goto(f"{serve_url}{OLLAMA_ONLY_PREFIX}/")
    keyed.set_input_files("#file", str(media.local_dir / "clip.mp4"))
    keyed.fill("#question", "What is shown?")
    keyed.click("#ask-button")
    expect(keyed.locator("#error")).to_contain_text("401 missing_api_key", timeout=30_000)
    keyed.fill("#api-key", CONFIG_KEY)
    keyed.dispatch_event("#api-key", "change")
    assert keyed.evaluate("sessionStorage.getItem('vidserve-api-key')") == CONFIG_KEY
    keyed.click("#ask-button")
    expect(keyed.locator("#answer")).to_contain_text("stand-in answer", timeout=60_000)
    expect(keyed.locator("#backend")).to_contain_text("answered by ollama")
    keyed.screenshot(path=SHOTS / "8-api-key.png")
    context.close()


def test_on_a_phone_the_api_key_field_does_not_cover_the_title(page: object) -> None:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        title = page.locator("header h1").bounding_box()
        field = page.locator("#api-key").bounding_box()
        assert title is not None
        assert field is not None
        apart = (
            field["y"] >= title["y"] + title["height"] or field["x"] >= title["x"] + title["width"]
        )
        assert apart, (title, field)
        assert field["x"] + field["width"] <= 390, field
        page.screenshot(path=SHOTS / "9-phone.png")
    finally:
        page.set_viewport_size({"width": 1100, "height": 1000})


def test_the_speech_heard_shows_under_the_player_and_can_be_turned_off(
    page: object, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from playwright.sync_api import Page, expect

    from tests.support.speech import spoken

    assert isinstance(page, Page)
    said = [(1.0, "Please remember to refuel the truck."), (6.0, "The meeting starts at noon.")]
    video = spoken(tmp_path_factory.mktemp("web-speech") / "talk.mp4", said, 9.0)
    page.set_input_files("#file", str(video))
    expect(page.locator("#player")).to_be_visible()
    page.fill("#question", "What is said?")
    page.click("#ask-button")
    lines = page.locator("#transcript li")
    expect(lines).to_have_count(2, timeout=120_000)
    expect(lines.nth(0)).to_contain_text("refuel")
    lines.nth(1).click()
    assert abs(float(page.get_attribute("#player", "data-seeked-to") or "nan") - 6.0) <= 0.5
    page.screenshot(path=SHOTS / "10-transcript.png")
    if not page.locator("#options").evaluate("details => details.open"):
        page.click("#options summary")
    page.uncheck("#speech")
    page.click("#ask-button")
    expect(page.locator("#frames .thumb").first).to_be_visible(timeout=120_000)
    expect(lines).to_have_count(0)
    page.check("#speech")


def test_the_page_declares_an_icon_that_is_served(page: object, serve_url: str) -> None:
    """Without one, browsers ask for /favicon.ico: a 404 on every visit."""
    import httpx
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    icon = page.locator("link[rel=icon]")
    assert icon.count() == 1
    href = icon.get_attribute("href") or ""
    assert httpx.get(f"{serve_url}/{href}").status_code == 200, href
