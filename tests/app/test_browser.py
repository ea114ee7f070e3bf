"""The page in a real browser (Playwright on Debian's chromium): upload, Generate, listen,
download, Continue, Back, errors, the layout at phone width, and live music: Generate sounds before its
result is complete, and the endless mode plays, follows a key change and hands over everything played.
Live times are the page's own clock (``performance.now()``), from the click to the live player's first
"playing" event.

Screenshots are test artefacts: they go to ``test-artifacts/screenshots`` (or MIDIGEN_SCREENSHOT_DIR),
at 1280 px and at 390 px (a phone), to be opened and looked at.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from app_testkit import CHROMIUM, CHROMIUM_ARGS, audio_facts, find_note, midi_facts, summary_counts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TIMEOUT_MS = 60_000
# Gradio's audio player (WaveSurfer) plays through an <audio> element it creates itself (inside a
# shadow root), so a plain querySelector('audio') never sees it: record every media element made.
MEDIA_HOOK = """
window.__media = [];
const createElement = Document.prototype.createElement;
Document.prototype.createElement = function (tag, ...rest) {
  const element = createElement.call(this, tag, ...rest);
  if (element instanceof HTMLMediaElement) window.__media.push(element);
  return element;
};
"""
LOADED_AUDIO = """(previous) => {
  const media = [...document.querySelectorAll('audio'), ...(window.__media || [])];
  const ready = media.filter(m => (m.currentSrc || m.src) && m.readyState >= 1 && m.duration > 0
                                  && isFinite(m.duration) && (m.currentSrc || m.src) !== previous);
  return ready.length ? {src: ready[ready.length - 1].currentSrc || ready[ready.length - 1].src,
                         duration: ready[ready.length - 1].duration} : null;
}"""
TAKE_DURATIONS = """(count) => {
  const live = window.midigenLive && window.midigenLive.audio;
  const media = [...new Set([...document.querySelectorAll('audio'), ...(window.__media || [])])].filter(
    m => m !== live && (m.currentSrc || m.src) && m.readyState >= 1 && m.duration > 0 && isFinite(m.duration));
  return media.length >= count ? media.map(m => m.duration) : null;
}"""
SUMMARY = """(previous) => {
  const texts = [...document.querySelectorAll('[data-testid=markdown]')].map(e => e.innerText.trim());
  const summary = texts.find(t => /\\d+ new notes/.test(t));
  return summary && summary !== previous ? summary : null;
}"""
PLAYER_DRAWN = "() => [...document.querySelectorAll('time')].some(t => /^[0-9]+:[0-9]+$/.test(t.textContent.trim()) " \
               "&& t.textContent.trim() !== '0:00')"
ROLL_BOX = """() => {
  const canvas = document.querySelector('#piano-roll canvas');
  if (!canvas || !canvas.width) return null;
  const box = canvas.getBoundingClientRect();
  return {width: box.width, height: box.height};
}"""
ROLL = "#piano-roll [data-lanes]"
UNNAMED_DIVS_REPAIRED = "() => !document.querySelector('div[aria-label]:not([role])')"
NO_OVERFLOW = "() => document.documentElement.scrollWidth <= window.innerWidth + 1"
PLAYER_ON_SCREEN = """(id) => { const box = document.getElementById(id).getBoundingClientRect();
                                 return box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight; }"""


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url, **context_options):
    context = browser.new_context(accept_downloads=True, **context_options)
    context.add_init_script(MEDIA_HOOK)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("button", name="Generate", exact=True).wait_for()
    return page


@pytest.fixture
def page(browser, midigen_app):
    page = open_page(browser, midigen_app.url, viewport={"width": 1280, "height": 900})
    try:
        yield page
    finally:
        page.context.close()


SCREENSHOTS = Path(os.environ.get("MIDIGEN_SCREENSHOT_DIR") or Path(__file__).resolve().parents[2] / "test-artifacts"
                   / "screenshots")


@pytest.fixture
def screenshot():
    """``screenshot(page, name)`` saves ``name.png`` in ``SCREENSHOTS``."""

    def take(page, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


# -- page helpers ------------------------------------------------------------------------------
def block(page, label: str):
    """The component whose label is ``label``."""
    return page.locator(".block").filter(has=page.get_by_test_id("block-label").filter(has_text=label))


def upload_seed(page, path: Path) -> None:
    page.locator("input[type=file]").first.set_input_files(str(path))
    block(page, "Seed MIDI").locator(f"a[download='{path.name}']").wait_for()


def click(page, name: str) -> None:
    page.get_by_role("button", name=name, exact=True).click()


def wait_for_summary(page, previous: str | None = None) -> str:
    return page.wait_for_function(SUMMARY, arg=previous, timeout=TIMEOUT_MS).json_value()


def wait_for_audio(page, previous_src: str | None = None) -> dict:
    """The newest player's media once its metadata is loaded: {src, duration}."""
    return page.wait_for_function(LOADED_AUDIO, arg=previous_src, timeout=TIMEOUT_MS).json_value()


def toasts_settled(page) -> None:
    """Every toast has slid in: its box stays the same for two animation frames (Playwright's "stable")."""
    for handle in page.get_by_test_id("toast-body").element_handles():
        handle.wait_for_element_state("stable", timeout=TIMEOUT_MS)


def settle(page) -> None:
    """Before a screenshot: the waveform is drawn (its duration shown) and toasts have slid in."""
    page.wait_for_function(PLAYER_DRAWN, timeout=TIMEOUT_MS)
    toasts_settled(page)


def midi_links(page):
    return block(page, "Download MIDI").locator("a[download$='.mid']")


def download_midi(page, tmp_path: Path):
    """Click the first .mid link of the results; return (file name, MidiFacts)."""
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        midi_links(page).first.click()
    download = info.value
    target = tmp_path / download.suggested_filename
    download.save_as(str(target))
    return download.suggested_filename, midi_facts(target.read_bytes())


def toast(page, text: str):
    return page.get_by_test_id("toast-body").filter(has_text=text)


# -- tests -------------------------------------------------------------------------------------
def test_generate_from_a_seed_plays_and_downloads(page, midigen_app, seed_files, screenshot, tmp_path):
    assert page.title() == "midigen"
    assert page.get_by_role("button", name="Generate", exact=True).is_visible()
    upload_seed(page, seed_files["scale"])
    click(page, "Generate")

    summary = wait_for_summary(page)
    new, seed_notes = summary_counts(summary)
    assert seed_notes == 8 and new > 0, summary
    audio = wait_for_audio(page)
    assert audio["duration"] > 20, audio  # 30 s asked for by default

    # The player plays the MP3 the app rendered: same length as the file behind its download link.
    mp3_link = block(page, "Variation 1").locator("a[download$='.mp3']").first.get_attribute("href")
    mp3 = tmp_path / "variation-1.mp3"
    mp3.write_bytes(httpx.get(mp3_link, timeout=60).content)
    assert abs(audio_facts(mp3).seconds - audio["duration"]) < 0.5, (audio, audio_facts(mp3))

    name, midi = download_midi(page, tmp_path)
    assert re.fullmatch(r"midigen-\d+-1\.mid", name), name
    assert len(midi.notes) == new + seed_notes
    seed = midi_facts(seed_files["scale"])
    assert all(find_note(midi.notes, note) for note in seed.notes), "the seed is not at the start of the download"
    assert abs(audio["duration"] - (midi.end_time + 1.0)) < 1.5, (audio, midi.end_time)

    assert page.evaluate(NO_OVERFLOW)
    settle(page)
    screenshot(page, "desktop-result")


def test_an_example_seed_is_continued_even_when_generate_follows_at_once(page):
    """The example loads through the server (slowed here to 600 ms a request): Generate waits for it."""
    network = page.context.new_cdp_session(page)
    network.send("Network.enable")
    network.send("Network.emulateNetworkConditions",
                 {"offline": False, "latency": 600, "downloadThroughput": -1, "uploadThroughput": -1})
    page.get_by_text("ode-to-joy.mid").first.click()
    click(page, "Generate")
    summary = wait_for_summary(page)
    assert "seed notes" in summary, summary


def test_a_request_waiting_for_a_worker_shows_its_place_in_the_queue(browser, midigen_app):
    """Two workers (``MIDIGEN_CONCURRENCY=2``) busy with long requests: the third page says where it waits."""
    pages = [open_page(browser, midigen_app.url, viewport={"width": 1280, "height": 900}) for _ in range(3)]
    try:
        for page in pages:
            for label, value in (("Length (seconds)", "60"), ("Variations", "4")):
                box = page.get_by_label(f"number input for {label}")
                box.fill(value)
                box.press("Enter")
        for page in pages:
            click(page, "Generate")
        pages[-1].wait_for_function("() => /queue: \\d+\\/\\d+/.test(document.body.innerText)")
        for page in pages:
            wait_for_summary(page)
    finally:
        for page in pages:
            page.context.close()


def test_phone_width_has_no_horizontal_overflow(browser, midigen_app, screenshot):
    page = open_page(browser, midigen_app.url, viewport={"width": 390, "height": 844}, is_mobile=True,
                     has_touch=True, device_scale_factor=2)
    try:
        assert page.evaluate(NO_OVERFLOW), page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
        page.get_by_role("button", name="Generate", exact=True).tap()
        wait_for_summary(page)
        # the result comes into view by itself, the test does not scroll: the first player wholly on screen
        page.wait_for_function(PLAYER_ON_SCREEN, arg="player-1", timeout=1000)
        wait_for_audio(page)
        settle(page)
        widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1] + 1, f"the page is {widths[0]} px wide in a {widths[1]} px window"
        screenshot(page, "phone-result")
    finally:
        page.context.close()


def test_phone_width_piano_roll_is_readable(browser, midigen_app):
    page = open_page(browser, midigen_app.url, viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page.get_by_role("button", name="Generate", exact=True).click()
        wait_for_summary(page)
        roll = page.wait_for_function(ROLL_BOX, timeout=TIMEOUT_MS).json_value()
        assert roll["height"] >= 100, f"the piano roll is shown {roll['width']:.0f} x {roll['height']:.0f} px"
    finally:
        page.context.close()


def test_bad_upload_shows_the_error_on_the_page(page, seed_files, screenshot):
    upload_seed(page, seed_files["not-midi"])
    click(page, "Generate")
    message = toast(page, "This file is not a MIDI file")
    message.first.wait_for()
    text = message.first.inner_text()
    assert "Traceback" not in text and "Error:" not in text, text
    toasts_settled(page)
    screenshot(page, "bad-upload")
    assert "Traceback" not in page.locator("body").inner_text()


def test_continue_grows_the_piece_and_back_returns(page, seed_files, screenshot, tmp_path):
    upload_seed(page, seed_files["scale"])
    click(page, "Generate")
    first_summary = wait_for_summary(page)
    first_audio = wait_for_audio(page)
    first_new, _ = summary_counts(first_summary)
    first_name, first_midi = download_midi(page, tmp_path / "first")

    click(page, "Continue")
    second_summary = wait_for_summary(page, previous=first_summary)
    second_audio = wait_for_audio(page, previous_src=first_audio["src"])
    new, seed_notes = summary_counts(second_summary)
    # The previous result became the seed, kept in full at the start of the new piece.
    block(page, "Seed MIDI").locator(f"a[download='{first_name}']").wait_for()
    assert seed_notes == len(first_midi.notes) == first_new + 8, (first_summary, second_summary)
    second_name, second_midi = download_midi(page, tmp_path / "second")
    assert second_name != first_name
    assert len(second_midi.notes) == seed_notes + new > len(first_midi.notes)
    assert second_midi.end_time > first_midi.end_time
    assert second_audio["duration"] > first_audio["duration"]
    settle(page)
    screenshot(page, "after-continue")

    click(page, "Back")
    page.wait_for_function(SUMMARY.replace("summary !== previous", "summary === previous"), arg=first_summary)
    block(page, "Seed MIDI").locator(f"a[download='{seed_files['scale'].name}']").wait_for()
    block(page, "Download MIDI").locator(f"a[download='{first_name}']").wait_for()
    assert midi_links(page).count() == 1


def test_continue_before_generate_explains_itself(page):
    click(page, "Continue")
    toast(page, "Generate something first").first.wait_for()


def test_back_without_history_leaves_the_result_visible(page, screenshot):
    click(page, "Generate")
    wait_for_summary(page)
    wait_for_audio(page)
    click(page, "Back")
    toast(page, "There is no earlier step to go back to.").first.wait_for()
    toasts_settled(page)
    screenshot(page, "back-without-history")
    badges = page.locator("[data-testid='status-tracker'] .error")
    visible = [badges.nth(i) for i in range(badges.count()) if badges.nth(i).is_visible()]
    assert not visible, f"{len(visible)} components show an 'Error' badge instead of their content"


def test_shared_link_restores_the_settings_and_the_piece(page, browser, midigen_app, tmp_path):
    page.get_by_text("frere-jacques.mid").first.click()
    block(page, "Seed MIDI").locator("a[download='frere-jacques.mid']").wait_for()
    length = page.get_by_label("number input for Length (seconds)")
    length.fill("7")
    length.press("Enter")
    click(page, "Generate")
    summary = wait_for_summary(page)
    _, first = download_midi(page, tmp_path / "first")

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    click(page, "Copy link")
    toast(page, "Link copied").wait_for()  # a short notice, no text box
    page.wait_for_function("async () => (await navigator.clipboard.readText()).includes('?')")
    link = page.evaluate("() => navigator.clipboard.readText()")
    assert "example=frere-jacques" in link and "seconds=7" in link and "randomize=false" in link, link
    assert re.search(r"random_seed=\d+", link) and link.startswith(midigen_app.url), link

    shared = open_page(browser, link, viewport={"width": 1280, "height": 900})
    try:
        block(shared, "Seed MIDI").locator("a[download='frere-jacques.mid']").wait_for()
        shared.wait_for_function("(e) => e.value === '7'",
                                 arg=shared.get_by_label("number input for Length (seconds)").element_handle())
        click(shared, "Generate")
        assert summary_counts(wait_for_summary(shared)) == summary_counts(summary)
        _, again = download_midi(shared, tmp_path / "again")
    finally:
        shared.context.close()
    assert again.notes == first.notes


def test_continue_grows_the_chosen_variation(page, tmp_path):
    variations = page.get_by_label("number input for Variations")
    variations.fill("2")
    variations.press("Enter")
    click(page, "Generate")
    summary = wait_for_summary(page)
    take = page.locator("#take")
    take.get_by_text("Variation 2").click()
    page.wait_for_function("() => /-2\\.mid$/.test(document.querySelector(\"a[download$='.mid']\")?.download || '')")
    name, second_take = download_midi(page, tmp_path / "take")
    assert name.endswith("-2.mid"), name

    click(page, "Continue")
    grown = wait_for_summary(page, previous=summary)
    _, seed_notes = summary_counts(grown)
    assert seed_notes == len(second_take.notes), grown
    _, piece = download_midi(page, tmp_path / "grown")
    assert all(find_note(piece.notes, note) for note in second_take.notes), "variation 2 is not what was continued"


def test_continue_and_back_work_after_the_sweep(page, midigen_app, tmp_path):
    """The server sweeps old output folders; the page's history keeps each step's MIDI and makes files again."""
    click(page, "Generate")
    first_summary = wait_for_summary(page)
    first_audio = wait_for_audio(page)
    first_name, first = download_midi(page, tmp_path / "first")
    for folder in (midigen_app.temp_dir / "gradio" / "midigen").glob("request-*"):
        shutil.rmtree(folder)  # what the sweep does to folders older than MIDIGEN_OUTPUT_MAX_AGE

    click(page, "Continue")
    second_summary = wait_for_summary(page, previous=first_summary)
    second_audio = wait_for_audio(page, previous_src=first_audio["src"])
    assert summary_counts(second_summary)[1] == len(first.notes), second_summary
    for folder in (midigen_app.temp_dir / "gradio" / "midigen").glob("request-*"):
        shutil.rmtree(folder)

    click(page, "Back")
    page.wait_for_function(SUMMARY.replace("summary !== previous", "summary === previous"), arg=first_summary)
    audio = wait_for_audio(page, previous_src=second_audio["src"])
    assert abs(audio["duration"] - first_audio["duration"]) < 0.5, (audio, first_audio)
    name, again = download_midi(page, tmp_path / "again")
    assert name == first_name and again.notes == first.notes


def roll_time(page) -> float:
    return float(page.locator(ROLL).get_attribute("data-time"))


def test_piano_roll_follows_the_music_and_seeks(page, screenshot):
    variations = page.get_by_label("number input for Variations")
    variations.fill("2")
    variations.press("Enter")
    click(page, "Generate")
    wait_for_summary(page)
    page.wait_for_function(f"() => document.querySelector('{ROLL}')?.dataset.lanes === '2'")
    page.wait_for_function(PLAYER_DRAWN)
    second_lane = page.locator(".roll-lane").nth(1)
    before = second_lane.screenshot()

    page.locator("#player-2 button[aria-label='Play']").click()
    page.wait_for_function(f"() => Number(document.querySelector('{ROLL}').dataset.time) > 1.0")
    head = second_lane.locator(".roll-playhead")
    page.wait_for_function("(e) => parseFloat(e.style.left) > 48", arg=head.element_handle())
    assert second_lane.screenshot() != before, "the roll did not change while the music played"
    screenshot(page, "roll-playing")

    second_lane.click(position={"x": 20 * 48, "y": 40})  # 48 px per second: jump to about 20 s
    page.wait_for_function(f"() => Number(document.querySelector('{ROLL}').dataset.time) >= 19.5")
    assert page.evaluate("window.midigenRoll.laneMedia[1].currentTime") >= 19.5
    page.locator("#player-2 button[aria-label='Pause']").click()


def test_clicking_the_roll_before_playing_starts_there(page):
    click(page, "Generate")
    wait_for_summary(page)
    page.wait_for_function(PLAYER_DRAWN)
    page.locator(".roll-lane").first.click(position={"x": 10 * 48, "y": 40})
    page.wait_for_function(f"() => Number(document.querySelector('{ROLL}').dataset.time) >= 9.5")
    page.locator("#player-1 button[aria-label='Pause']").click()


def test_regenerate_from_a_time_keeps_every_note_before_it(page, tmp_path):
    click(page, "Generate")
    summary = wait_for_summary(page)
    _, first = download_midi(page, tmp_path / "first")
    cut_at = page.get_by_label("Regenerate from (seconds)")
    cut_at.fill("12")
    cut_at.press("Enter")
    click(page, "Regenerate from here")
    again = wait_for_summary(page, previous=summary)
    _, piece = download_midi(page, tmp_path / "again")
    before = [note for note in first.notes if note[1] < 12]
    assert before and all(find_note(piece.notes, note) for note in before), "a note before the cut changed"
    assert summary_counts(again)[1] == len(before), again  # the seed is what came before the cut, no more
    later = [note for note in first.notes if note[1] >= 12.5]
    assert [note for note in piece.notes if note[1] >= 12.5] != later, "the rest was not composed again"
    page.wait_for_function("(e) => e.value === '0'", arg=cut_at.element_handle())  # the cut was for one request


def test_a_choice_of_sound_changes_the_audio_not_the_music(page, tmp_path):
    page.get_by_text("Advanced").first.click()
    seed = page.get_by_label("Random seed")
    seed.fill("5")
    seed.press("Enter")
    page.get_by_label("Randomize").uncheck()
    heard, src = [], None
    for index, sound in enumerate(("FluidR3 GM (default)", "TimGM6mb (small, mellow)")):
        page.get_by_label("Sound", exact=True).first.click()
        page.get_by_role("option", name=sound, exact=True).click()
        click(page, "Generate")
        src = wait_for_audio(page, src)["src"]  # a new request's player
        mp3 = block(page, "Variation 1").locator("a[download$='.mp3']").first.get_attribute("href")
        _, midi = download_midi(page, tmp_path / str(index))
        heard.append((midi.notes, httpx.get(mp3, timeout=60).content))
    (notes_a, audio_a), (notes_b, audio_b) = heard
    assert notes_a == notes_b  # the same music
    assert audio_a != audio_b  # played through another soundfont


# -- accessibility -------------------------------------------------------------------------------
def serious_faults(page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is: rule, how many, and where."""
    from axe_playwright_python.sync_playwright import Axe

    page.wait_for_function(UNNAMED_DIVS_REPAIRED, timeout=TIMEOUT_MS)  # the page's repairs run once it has loaded
    found = Axe().run(page).response["violations"]
    return [f"{v['id']} x{len(v['nodes'])}: {v['nodes'][0]['target']}" for v in found
            if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("width,height", [(1280, 900), (390, 844)])
def test_no_serious_accessibility_faults_before_and_after_a_result(browser, midigen_app, width, height):
    page = open_page(browser, midigen_app.url, viewport={"width": width, "height": height})
    try:
        assert serious_faults(page) == []
        click(page, "Generate")
        wait_for_summary(page)
        wait_for_audio(page)
        settle(page)
        assert serious_faults(page) == []
        roll = page.locator("#piano-roll .roll-scroll")  # reachable with the keyboard, and said in words
        assert roll.get_attribute("tabindex") == "0"
        assert re.search(r"variation 1: \d+ notes \(\d+ new\) from [A-G]", roll.get_attribute("aria-label"))
    finally:
        page.context.close()


def test_the_actions_on_the_result_sit_beside_it(page):
    actions = page.locator("#result-actions")
    for name in ("Continue", "Back", "Forward", "Regenerate from here", "Copy link"):
        assert actions.get_by_role("button", name=name, exact=True).is_visible()
    assert page.locator("#result").get_by_role("button", name="Generate", exact=True).count() == 0


# -- live music ---------------------------------------------------------------------------------
CLICK_CLOCK = """
window.__clicks = {};
document.addEventListener('click', event => {
  const button = event.target.closest('button');
  if (button) window.__clicks[button.textContent.trim()] = performance.now();
}, true);
window.__summaryAt = null;
new MutationObserver(() => {
  const shown = [...document.querySelectorAll('[data-testid=markdown]')].some(e => /\\d+ new notes/.test(e.innerText));
  if (shown && window.__summaryAt === null) window.__summaryAt = performance.now();
}).observe(document, {subtree: true, childList: true, characterData: true});
"""
LIVE_STATE_IS = ("(state) => { const e = document.querySelector('#live [data-state]'); "
                 "return e && e.dataset.state === state; }")
C_MAJOR = {0, 2, 4, 5, 7, 9, 11}
F_SHARP_MAJOR = {6, 8, 10, 11, 1, 3, 5}


def choose(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).first.click()
    page.get_by_role("option", name=option, exact=True).click()


def set_length(page, seconds: int) -> None:
    box = page.get_by_label("number input for Length (seconds)")
    box.fill(str(seconds))
    box.press("Enter")


def first_sound_after(page, button: str) -> float:
    """Milliseconds from the click on ``button`` to the live player's first sound."""
    page.wait_for_function("() => window.midigenLive && window.midigenLive.firstSound.length > 0", timeout=TIMEOUT_MS)
    return page.evaluate(f"() => window.midigenLive.firstSound[0] - window.__clicks[{button!r}]")


def test_generate_sounds_before_the_result_is_complete_and_the_player_holds_it_all(page):
    page.add_init_script(CLICK_CLOCK)
    page.reload()
    set_length(page, 60)
    page.get_by_label("number input for Variations").fill("2")
    page.get_by_label("number input for Variations").press("Enter")
    click(page, "Generate")
    sound = first_sound_after(page, "Generate")
    page.wait_for_function(SUMMARY, arg=None, timeout=TIMEOUT_MS)
    complete = page.evaluate("() => window.__summaryAt - window.__clicks['Generate']")
    assert 0 < sound < complete, (sound, complete)  # heard while the takes were still being rendered

    takes = page.wait_for_function(TAKE_DURATIONS, arg=2, timeout=TIMEOUT_MS).json_value()
    page.wait_for_function(LIVE_STATE_IS, arg="ended", timeout=90_000)
    streamed = page.evaluate("() => window.midigenLive.audio.duration")
    # a take's player holds what was streamed, whole (which player loads last varies; the takes' lengths differ)
    assert min(abs(streamed - duration) for duration in takes) < 0.3, (streamed, takes)
    assert min(takes) > 55


def test_endless_plays_on_follows_a_key_change_and_stop_offers_what_was_played(browser, midigen_app, tmp_path):
    page = open_page(browser, midigen_app.url, viewport={"width": 1280, "height": 900})
    try:
        page.add_init_script(CLICK_CLOCK)
        page.reload()
        page.get_by_role("button", name="Generate", exact=True).wait_for()
        choose(page, "Key", "C major")
        click(page, "Play on (endless)")
        sound = first_sound_after(page, "Play on (endless)")
        assert sound < 5000
        page.evaluate("() => { window.__stalls = 0; window.midigenLive.audio.addEventListener('waiting', "
                      "() => window.__stalls++); }")
        page.wait_for_function("() => window.midigenLive.audio.currentTime > 8", timeout=TIMEOUT_MS)
        roll = page.locator("#live .live-roll-box")
        assert roll.is_visible() and "played; notes from MIDI" in roll.get_attribute("aria-label")  # it keeps up
        choose(page, "Key", "F# major")
        changed = page.evaluate("() => window.midigenLive.audio.currentTime")
        # long enough after the change (however long choosing took) for two bars and some notes in the new key
        page.wait_for_function("(t) => window.midigenLive.audio.currentTime > t", arg=max(22.0, changed + 16.0),
                               timeout=TIMEOUT_MS)
        assert page.evaluate("() => window.__stalls") == 0  # no gap while it played
        click(page, "Stop")
        page.wait_for_function(LIVE_STATE_IS, arg="stopped", timeout=TIMEOUT_MS)
        played = page.evaluate("() => window.midigenLive.endlessAt")
        page.get_by_text("Endless session").wait_for()
        _, midi = download_midi(page, tmp_path)
    finally:
        page.context.close()

    starts = np.array([start for _, start, _ in midi.notes])
    assert starts.max() <= played + 0.01 and starts.max() > played - 4  # everything played, and no more
    bar = 4 * 60 / midi.tempo
    classes = np.array([pitch % 12 for pitch, _, _ in midi.notes])
    before = classes[starts < changed]
    after = classes[starts > changed + 2 * bar]  # heard within two bars of the change
    assert len(before) > 10 and len(after) > 10
    assert np.isin(before, list(C_MAJOR)).mean() > 0.8
    assert np.isin(after, list(F_SHARP_MAJOR)).mean() > 0.8
