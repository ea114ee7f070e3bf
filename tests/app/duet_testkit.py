"""Helpers for the Duet tab in Chromium, shared by its browser tests and ``benchmarks/run.py``'s duet section.

``SOUND_HOOK`` (an init script) records every ``AudioBufferSourceNode.start``: ``role`` ("you" or "midigen", set by
``web/duet.js``), ``when`` and the audio clock at the call (``now``), and the page's clock (``perf``); and every
key event: its ``timeStamp``, the page's clock and the duet's audio clock when it came. ``MIDI_MOCK`` stands in
for ``navigator.requestMIDIAccess`` with one input, ``window.__midiInput``, whose messages a test sends.
"""

from __future__ import annotations

from app_testkit import CHROMIUM, CHROMIUM_ARGS

from midigen.controls import KEY_NAMES
from midigen.stats import duration_profile, estimate_key

TIMEOUT_MS = 60_000
SOUND_HOOK = """
window.__starts = [];
window.__keys = [];
const originalStart = AudioBufferSourceNode.prototype.start;
AudioBufferSourceNode.prototype.start = function (when, ...rest) {
  window.__starts.push({role: this.role, when: when || 0, now: this.context.currentTime, perf: performance.now()});
  return originalStart.call(this, when, ...rest);
};
for (const type of ["keydown", "keyup"]) {
  document.addEventListener(type, event => {
    const duet = window.midigenDuet;
    window.__keys.push({type, stamp: event.timeStamp, perf: performance.now(),
                        audio: duet && duet.context ? duet.context.currentTime : null});
  }, true);
}
"""
MIDI_MOCK = """
window.__midiInput = {onmidimessage: null};
navigator.requestMIDIAccess = () => Promise.resolve({inputs: new Map([["mock", window.__midiInput]]),
                                                     outputs: new Map(), onstatechange: null});
"""
KEY_SOUNDED = "(count) => window.__starts.filter(s => s.role === 'you').length >= count"
ANSWERED = "(count) => window.__starts.filter(s => s.role === 'midigen').length > 0 " \
           "&& window.midigenDuet.answers.length >= count"
SAMPLES_READY = "() => window.midigenDuet && window.midigenDuet.buffers"
C_E_G_C_KEYS = "adgk"  # C4 E4 G4 C5 in the Ableton layout


def launch(playwright):
    """Chromium as the app tests run it, allowed to play sound without a gesture."""
    return playwright.chromium.launch(executable_path=CHROMIUM, timeout=TIMEOUT_MS,
                                      args=[*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"])


def open_duet(page, url: str) -> None:
    """The page at ``url`` on its Duet tab, with the keyboard's sound loaded."""
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("tab", name="Duet").click()
    page.wait_for_function(SAMPLES_READY)


def play_keys(page, keys: str, held_ms: int = 120, gap_ms: int = 60) -> None:
    """Play ``keys`` on the computer keyboard one after another, as a person would."""
    for key in keys:
        page.keyboard.down(key)
        page.wait_for_timeout(held_ms)
        page.keyboard.up(key)
        page.wait_for_timeout(gap_ms)


def key_latency_ms(page, index: int) -> tuple[float, float]:
    """For the ``index``-th key pressed: (ms on the audio clock from the keydown to its sound's start, ms on the
    page's clock from the event's timeStamp to the start call)."""
    key = page.evaluate(f"window.__keys.filter(k => k.type === 'keydown')[{index}]")
    start = page.evaluate(f"window.__starts.filter(s => s.role === 'you')[{index}]")
    sounds_at = max(start["when"], start["now"])
    return (sounds_at - key["audio"]) * 1000, start["perf"] - key["stamp"]


def answer_latency_ms(page) -> float:
    """Ms on the page's clock from the end of the last pause (the last keyup plus the pause set) to the first sound
    of the answer that followed it (the start call, plus how far ahead it was scheduled)."""
    return page.evaluate("""() => {
      const pause = Number(document.querySelector('.duet-pause').value) * 1000;
      const ups = window.__keys.filter(k => k.type === 'keyup');
      const pauseEnd = ups[ups.length - 1].perf + pause;
      const first = window.__starts.find(s => s.role === 'midigen' && s.perf >= pauseEnd - pause);
      return first.perf + (first.when - first.now) * 1000 - pauseEnd;
    }""")


def key_of(notes: list[dict]) -> str:
    """The Krumhansl-Schmuckler key of ``notes`` (duration-weighted)."""
    profile = duration_profile([n["pitch"] for n in notes], [n["end"] - n["start"] for n in notes])
    return KEY_NAMES[estimate_key(profile)]
