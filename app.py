"""midigen web demo: a thin Gradio layer over ``midigen.studio``.

Run ``python app.py``; the API endpoint ``/generate`` is usable with gradio_client. Importing this
module does nothing but define functions: ``build_demo`` makes the page, ``main`` loads the weights,
warms up and launches.
"""

from __future__ import annotations

import html
import inspect
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import gradio as gr
from gradio.data_classes import FileData
from gradio.utils import NamedString
from gradio_client import utils as client_utils

from midigen import duet, heap, history, share
from midigen.generate import GenerationRequest
from midigen.live import EndlessLive, LiveHub, PieceStream
from midigen.render import RenderUnavailable
from midigen.settings import NAMES, SETTINGS, Setting, UserError, clean_settings, setting
from midigen.studio import AppLimits, Composition, NewMusicMeter, Studio

LOG = logging.getLogger("midigen.app")
SEED_INPUT = "seed_file"
OUTPUT_NAMES = (*(f"audio_{i}" for i in range(1, AppLimits().max_variations + 1)),
                "midi_files", "piano_roll", "summary", "random_seed")
CSS = """
#title { text-align: center; margin-bottom: 0; }
#subtitle { text-align: center; margin-top: 0; color: var(--body-text-color-subdued); }
/* the players' times are gray-400 in Gradio's audio player: 2.5 to 1 */
.player #time, .player #duration, .player .playback span { color: var(--neutral-600) !important; }
#result-actions { gap: 6px; flex-wrap: wrap; }
/* wide screens: the result stays in view while the settings scroll (on a phone it follows them) */
@media (min-width: 769px) {
  #result { position: sticky; top: 8px; align-self: flex-start; max-height: calc(100vh - 16px); overflow-y: auto; }
}
"""
WEB = Path(__file__).resolve().parent / "web"
ROLL_TEMPLATE = ('<div class="roll-scroll" tabindex="0" role="img" aria-label="Piano roll: no music yet">'
                 '<div class="roll-lanes"></div></div>')
LIVE_TEMPLATE = (WEB / "live.html").read_text()
# Copy link: the address the server made goes to the clipboard (the click's permission lasts seconds).
COPY_JS = "(address) => { navigator.clipboard && navigator.clipboard.writeText(address).catch(() => {}); }"
# On a phone the result sits below the settings: bring the first player on screen (nothing moves on a wide screen).
SHOW_RESULT_JS = """() => {
  const player = document.getElementById("player-1");
  if (!player || window.innerWidth > 768) return;
  const box = player.getBoundingClientRect();
  if (box.top < 0 || box.bottom > window.innerHeight) player.scrollIntoView({block: "center", behavior: "instant"});
}"""
STEERING = ("key", "density", "temperature", "repetition")  # the settings an endless session follows as it plays
# Regenerate from here: without a typed time, the time where the chosen take's player is (web/piano_roll.js).
REGENERATE_JS = """(historyState, take, seconds) => {
  const lane = take ? Number(String(take).replace(/\\D/g, "")) - 1 : 0;
  const roll = window.midigenRoll;
  return [historyState, take, seconds || (roll && roll.position ? Math.round(roll.position(lane) * 100) / 100 : 0)];
}"""



@dataclass(frozen=True)
class AppConfig:
    """How the server runs, from ``MIDIGEN_*`` environment variables (docs/deploy.md)."""

    time_limit_s: float = 30.0
    concurrency: int = 2
    queue_size: int = 16
    output_max_age_s: float = AppLimits.output_max_age_s
    live_streams: int = 16
    endless_max_minutes: float = 60.0

    @classmethod
    def from_env(cls, env=os.environ) -> AppConfig:
        return cls(float(env.get("MIDIGEN_TIME_LIMIT", cls.time_limit_s)),
                   int(env.get("MIDIGEN_CONCURRENCY", cls.concurrency)),
                   int(env.get("MIDIGEN_QUEUE_SIZE", cls.queue_size)),
                   float(env.get("MIDIGEN_OUTPUT_MAX_AGE", cls.output_max_age_s)),
                   int(env.get("MIDIGEN_LIVE_STREAMS", cls.live_streams)),
                   float(env.get("MIDIGEN_ENDLESS_MAX_MINUTES", cls.endless_max_minutes)))


@dataclass
class Composer:
    """What ``build_demo`` needs to answer a click: the studio, where sampling runs, a worker pool, and the live
    streams (``midigen.live``)."""

    studio: Studio
    sample: Callable | None  # sample(request, seed) -> (pieces, notices); None: the studio's CPU generator
    workers: ThreadPoolExecutor
    time_limit_s: float
    live: LiveHub = field(default_factory=LiveHub)
    endless_max_minutes: float = 60.0
    # composed, waiting for their audio, with the first take's live stream (page only)
    pending: dict[str, tuple[Composition, PieceStream | None]] = field(default_factory=dict)
    duet: duet.Duet | None = None  # the Duet tab's answers and sound; None: one on the studio's styles

    def __post_init__(self):
        self.duet = self.duet or duet.Duet(self.studio.styles)

    def compose(self, seed_file, values: dict, progress: Callable[[float, str], None]) -> dict:
        """The named outputs for one request (the ``/generate`` API); any failure becomes a short ``gr.Error``."""
        with answering():
            request = GenerationRequest.from_settings(clean_settings(values))
            result = self._within_limit(self.studio.run, seed_file, request, self.sample, progress=progress)
        return self._outputs(result)

    def start(self, seed_file, values: dict, progress: Callable[[float, str], None]) -> tuple[str, dict | None]:
        """The page's first half of a request: compose it and open a live stream of its first take. Returns the
        key that ``finish`` takes and the live player's value (None without audio)."""
        with answering():
            request = GenerationRequest.from_settings(clean_settings(values))
            composition = self._within_limit(self.studio.compose, seed_file, request, self.sample,
                                             progress=progress)
        for notice in composition.silent.values():  # said before the first take plays, not only in the summary
            gr.Warning(notice)
        key = os.urandom(12).hex()
        self.pending = {k: v for k, v in self.pending.items() if time.perf_counter() - v[0].started < 600}
        try:
            stream = PieceStream(composition.previews[0], composition.soundfont,
                                 NewMusicMeter(composition.previews[0]))
        except RenderUnavailable:  # no audio here: the MIDI and piano roll come as before
            self.pending[key] = composition, None
            return key, None
        self.pending[key] = composition, stream  # its recording becomes the first take's file, heard live or not
        try:
            stream_id = self.live.open(stream)
        except UserError:  # too many streams: the players come as before
            return key, None
        return key, {"url": self.live.url(stream_id), "kind": "piece", "id": stream_id}

    def finish(self, key: str, progress: Callable[[float, str], None]) -> dict:
        """The page's second half of a request: every take's audio and the piano roll."""
        composition, stream = self.pending.pop(key, (None, None))
        if composition is None:
            raise gr.Error("This result has expired; please generate again.", print_exception=False)
        with answering():
            finish = partial(self.studio.finish, first_take=stream.recording if stream else None)
            result = self._within_limit(finish, composition, progress=progress)
        return self._outputs(result)

    def start_endless(self, seed_file, values: dict) -> tuple[str, dict]:
        """Open an endless session with these settings (from scratch, or continuing the seed): its id and the live
        player's value."""
        from midigen.endless import EndlessStream

        with answering():
            request = GenerationRequest.from_settings(clean_settings(values))
            seed, notices = self.studio.load_seed(seed_file, request.keep_seed_until)
            for notice in notices:
                gr.Info(notice)
            generator = self.studio.styles.choose(request, seed)
            endless = self._within_limit(EndlessStream, generator, request, seed)
            try:
                live = EndlessLive(endless, endless.request.program, self.endless_max_minutes * 60,
                                   kept_seed=seed is not None and not request.continuation_only,
                                   soundfont=request.soundfont)
                stream_id = self.live.open(live)
            except RenderUnavailable as error:
                raise UserError(f"Audio is unavailable on this server ({error}).") from None
        return stream_id, {"url": self.live.url(stream_id), "kind": "endless", "id": stream_id}

    def steer(self, stream_id: str | None, values: dict) -> None:
        """Hand changed settings to a playing endless session (from the next bar on)."""
        stream = self.live.get(stream_id) if stream_id else None
        if not isinstance(stream, EndlessLive):
            return
        with answering():
            cleaned = clean_settings(values)
            stream.steer(**{name: cleaned[name] for name in STEERING})

    def stop_endless(self, stream_id: str | None, played: float) -> tuple[Path, str] | None:
        """End an endless session: the MIDI file of everything played (and the seed, kept), and a summary."""
        stream = self.live.close(stream_id) if stream_id else None
        if not isinstance(stream, EndlessLive):
            return None
        with answering():
            played = max(0.0, min(float(played or 0.0), stream.sent))
            endless = stream.endless
            path = self.studio.new_folder() / f"midigen-endless-{endless.random_seed}.mid"
            path.write_bytes(endless.midi_bytes(until=played))
        return path, (f"Endless session: {played / 60:.1f} minutes played at {endless.bpm:.0f} BPM, random seed "
                      f"{endless.random_seed}. The MIDI file holds everything played"
                      + (" after the seed." if stream.kept_seed else "."))

    def _within_limit(self, work: Callable, *args, progress: Callable[[float, str], None] | None = None):
        """``work(*args)`` on a worker within the time limit. With ``progress`` (handed to ``work`` last), work that
        outlives the limit stops at its next step, so its worker is free for the next request at once; work still
        waiting for a worker never starts."""
        time_up = threading.Event()
        if progress is not None:
            def checked(fraction: float, message: str) -> None:
                if time_up.is_set():
                    raise TimeoutError("the request's time limit passed")
                progress(fraction, message)

            args = (*args, checked)
        job = self.workers.submit(work, *args)
        try:
            return job.result(timeout=self.time_limit_s)
        except FutureTimeout:
            time_up.set()
            job.cancel()
            raise UserError("This took too long; please try a shorter length.") from None

    @staticmethod
    def _outputs(result) -> dict:
        audio = [str(p) for p in result.audio_paths]
        outputs = {f"audio_{i}": path for i, path in enumerate(audio, start=1)}
        outputs.update(midi_files=[str(p) for p in result.midi_paths], piano_roll=result.roll,
                       summary=result.summary + "".join(f"\n\n{n}" for n in result.notices),
                       random_seed=result.random_seed)
        return {name: outputs.get(name) for name in OUTPUT_NAMES}


@contextmanager
def answering():
    """Failures of a click as short messages: a ``UserError`` as it is, anything else as one sentence (logged)."""
    try:
        yield
    except gr.Error:
        raise
    except UserError as error:
        raise gr.Error(str(error), print_exception=False) from None
    except Exception:
        LOG.exception("generation failed")
        raise gr.Error("Something went wrong while composing; please try again.", print_exception=False) from None


def with_parameters(fn: Callable, names: tuple[str, ...]) -> Callable:
    """``fn(values: dict, progress)`` as a function of one named parameter per value: Gradio reads the
    signature for the API's parameter names, and a ``gr.Progress`` default for the progress bar."""

    def call(*args):
        return fn(dict(zip(names, args[:-1], strict=True)), args[-1])

    parameters = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    parameters.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()))
    call.__signature__ = inspect.Signature(parameters)
    call.__name__, call.__doc__ = fn.__name__, fn.__doc__
    return call


def as_sent(component: gr.components.Component) -> gr.components.Component:
    """``component`` with Gradio's own input checks turned off: its value reaches ``clean_settings`` as
    sent, so an API caller who sends a non-number gets a short message instead of an opaque error."""
    component.preprocess = lambda payload: payload
    return component


def seed_input() -> gr.File:
    """The seed upload. Gradio's ``File(type="filepath")`` makes an empty temporary file for every file it passes
    on and never uses or removes it (one per upload, piling up in Gradio's temp folder); this one passes the
    uploaded file's path on as Gradio's own does, without that file."""
    component = gr.File(label="Seed MIDI (optional)", file_types=[".mid", ".midi"], type="filepath")

    def uploaded(file: FileData) -> NamedString:
        if not client_utils.is_valid_file(file.path, component.file_types):
            raise gr.Error("Please upload a MIDI file (.mid or .midi).", print_exception=False)
        return NamedString(file.path)

    component._process_single_file = uploaded
    return component


def widget(spec: Setting) -> gr.components.Component:
    """The page's widget for one setting."""
    common = {"label": spec.label, "info": spec.help, "value": spec.default}
    if spec.widget == "slider":
        return gr.Slider(spec.low, spec.high, step=spec.step, **common)
    if spec.widget == "number":
        return gr.Number(minimum=0 if spec.automatic is not None else spec.low, maximum=spec.high,
                         precision=0 if spec.kind is int else None, **common)
    if spec.widget == "dropdown":
        return gr.Dropdown(spec.choices, **common)
    if spec.widget == "checkbox":
        return gr.Checkbox(**common)
    raise ValueError(f"unknown widget {spec.widget!r} for {spec.name}")


def setting_widgets(specs) -> dict[str, gr.components.Component]:
    """Widgets for ``specs`` in order, a setting marked ``beside_previous`` in one row with the one before."""
    widgets, index = {}, 0
    while index < len(specs):
        group = [specs[index]]
        while index + len(group) < len(specs) and specs[index + len(group)].beside_previous:
            group.append(specs[index + len(group)])
        if len(group) == 1:
            widgets[group[0].name] = as_sent(widget(group[0]))
        else:
            with gr.Row():
                widgets.update({spec.name: as_sent(widget(spec)) for spec in group})
        index += len(group)
    return widgets


class HistorySteps:
    """Continue, Back, Forward and the choice of take, over a history whose files never expire: each step
    keeps its MIDI (and piano roll) bytes in the session state, and its files are made again when the
    sweep has taken them (``history``, ``Studio.restore``)."""

    def __init__(self, studio: Studio):
        self.studio = studio

    @staticmethod
    def file_of(value) -> Path | None:
        return Path(value) if value else None

    def remember(self, state: dict, seed_file, soundfont, *outputs) -> dict:
        """Record the result just shown, with its bytes and the sound it was played with."""
        named = dict(zip(OUTPUT_NAMES, outputs, strict=True))
        seed_path = self.file_of(seed_file)
        return history.record(state, {
            "soundfont": soundfont,
            "seed": ({"name": seed_path.name, "data": seed_path.read_bytes()}
                     if seed_path and seed_path.exists() else None),
            "outputs": named,
            "names": [Path(p).name for p in named["midi_files"]],
            "takes": [Path(p).read_bytes() for p in named["midi_files"]],
        })

    def refreshed(self, state: dict) -> tuple[dict, dict]:
        """(state, outputs of the step shown), its files kept from the sweep or made again."""
        step = history.shown(state)
        named = step["outputs"]
        files = [named[name] for name in OUTPUT_NAMES if name.startswith("audio_") and named[name]]
        if self.studio.keep([*files, *named["midi_files"]]):
            return state, named
        midi, audio = self.studio.restore(step["takes"], step["names"], named["piano_roll"]["start"],
                                          step.get("soundfont") or setting("soundfont").default)
        named = {**named, **{f"audio_{i}": str(p) for i, p in enumerate(audio, start=1)},
                 "midi_files": [str(p) for p in midi]}
        return history.replace_shown(state, {**step, "outputs": named}), named

    def seed_file(self, step: dict):
        recorded = step["seed"]
        return str(self.studio.write_seed(recorded["data"], recorded["name"])) if recorded else None

    @staticmethod
    def take_choice(count: int):
        """The take picker: one choice per variation, shown when there are several."""
        choices = [f"Variation {i}" for i in range(1, count + 1)]
        return gr.Radio(choices=choices, value=choices[0] if choices else None, visible=count > 1)

    def continue_from(self, state: dict, take: int | None):
        """The chosen take of the step shown becomes the seed, kept in the output so the piece grows."""
        data = history.take_to_continue(state, take or 0)
        if data is None:
            gr.Info("Generate something first, then Continue grows it: composing a first piece now.")
            return gr.skip(), gr.skip()
        names = history.shown(state)["names"]
        return str(self.studio.write_seed(data, names[min(take or 0, len(names) - 1)])), True

    def regenerate_from(self, state: dict, take: int | None, seconds):
        """The chosen take of the step shown becomes the seed again, kept up to ``seconds`` and composed anew
        after it with a new random seed."""
        data = history.take_to_continue(state, take or 0)
        if data is None:
            raise gr.Error("Generate something first; then pick a time in it to regenerate from.",
                           print_exception=False)
        if not seconds:
            raise gr.Error("Pick a time: play the piece and pause where the new part should begin, or type the "
                           "seconds in Regenerate from.", print_exception=False)
        names = history.shown(state)["names"]
        seed_path = self.studio.write_seed(data, names[min(take or 0, len(names) - 1)])
        return str(seed_path), True, True, seconds

    def go(self, by: int) -> Callable:
        """Back (-1) or Forward (+1): show that step again, files and all."""
        def handler(state: dict):
            moved = history.move(state, by)
            if moved is None:
                gr.Warning("There is no earlier step to go back to." if by < 0 else
                           "There is no later step to go forward to.")
                return [gr.skip()] * (3 + len(OUTPUT_NAMES))
            moved, named = self.refreshed(moved)
            step = history.shown(moved)
            return (moved, self.seed_file(step), self.take_choice(len(step["takes"])),
                    *(named[name] for name in OUTPUT_NAMES))
        return handler

    def keep_fresh(self, state: dict):
        """Now and then, while the tab is open: the files on the page stay, or are made again."""
        if history.shown(state) is None:
            return [gr.skip()] * (1 + len(OUTPUT_NAMES))
        fresh, named = self.refreshed(state)
        if fresh is state:
            return [gr.skip()] * (1 + len(OUTPUT_NAMES))
        return fresh, *(named[name] for name in OUTPUT_NAMES)

    @staticmethod
    def offer_first(state: dict, take: int | None):
        """The downloads, the chosen take first."""
        step = history.shown(state)
        if step is None:
            return gr.skip()
        files = step["outputs"]["midi_files"]
        take = min(take or 0, len(files) - 1)
        return [files[take], *files[:take], *files[take + 1:]]


def build_demo(composer: Composer, examples: list[Path], notice: str = "") -> gr.Blocks:
    """The page and its ``/generate`` API, answering with ``composer``; ``notice`` is shown above the results."""
    max_variations = composer.studio.limits.max_variations

    def generate(values: dict, progress=None) -> list:
        """Compose music, optionally continuing a seed MIDI; returns the audio players, the MIDI files,
        the piano roll, a summary and the random seed used."""
        seed_file = values.pop(SEED_INPUT)
        outputs = composer.compose(seed_file, values, lambda fraction, message: progress(fraction, desc=message))
        return [outputs[name] for name in OUTPUT_NAMES]

    def start(values: dict, progress=None) -> tuple[str, dict | None]:
        """The page's Generate: compose, and start streaming the first take (``Composer.start``)."""
        seed_file = values.pop(SEED_INPUT)
        return composer.start(seed_file, values, lambda fraction, message: progress(fraction, desc=message))

    def finish(key: str, progress=gr.Progress()) -> list:
        """The rest of the page's Generate: the players, downloads and piano roll."""
        outputs = composer.finish(key, lambda fraction, message: progress(fraction, desc=message))
        return [outputs[name] for name in OUTPUT_NAMES]

    def start_endless(*values) -> tuple:
        """Play on: an endless session with the settings on the page."""
        named = dict(zip((SEED_INPUT, *NAMES), values, strict=True))
        stream_id, live_value = composer.start_endless(named.pop(SEED_INPUT), named)
        return stream_id, live_value, gr.Button(visible=False), gr.Button(visible=True)

    def endless_api(values: dict, progress=None) -> str:
        """Start an endless stream with these settings; returns its address (relative to the page) for HTTP GET:
        frames of a JSON header and MP3 audio (``midigen.live``), playing until the client goes away."""
        _, live_value = composer.start_endless(values.pop(SEED_INPUT), values)
        return live_value["url"]

    def steer(stream_id, *values) -> None:
        composer.steer(stream_id, dict(zip(STEERING, values, strict=True)))

    def stop_endless(stream_id, played) -> tuple:
        """Stop: the session's MIDI offered for download."""
        stopped = composer.stop_endless(stream_id, played)
        buttons = gr.Button(visible=True), gr.Button(visible=False)
        if stopped is None:
            return None, None, gr.skip(), gr.skip(), *buttons
        path, text = stopped
        return None, None, [str(path)], text, *buttons

    def show_players(*audio):
        """One player per variation that has audio (the first always)."""
        return [gr.Audio(visible=index == 0 or value is not None) for index, value in enumerate(audio)]

    by_content = {path.read_bytes(): path.stem for path in examples}
    by_name = {path.stem: str(path) for path in examples}

    def link(seed_file, *values):
        """A link to the page with these settings, the random seed last used and the example seed by name.
        The last value is the page's own address, put there by the browser."""
        *settings_values, page_url = values
        example = by_content.get(Path(seed_file).read_bytes()) if seed_file else None
        if seed_file and example is None:
            gr.Info("The link holds the settings and random seed, not the uploaded file.")
        values = dict(zip(NAMES, settings_values, strict=True))
        try:
            query = share.share_query(values, values["random_seed"], example)
        except UserError as error:
            raise gr.Error(str(error), print_exception=False) from None
        address = f"{str(page_url).split('?')[0].split('#')[0]}?{query}"
        gr.Info(f"Link copied: {address}")
        return address

    def restore(request: gr.Request):
        """Settings and example seed from the link the page was opened with; the rest stays as it is."""
        query = dict(request.query_params) if request else {}
        try:
            given = share.settings_from_query(query)
        except UserError as error:
            gr.Warning(f"This link's settings could not be used: {error}")
            given = {}
        example = by_name.get(query.get(share.EXAMPLE, ""))
        seed_file = example if example else gr.skip()
        shown = {name: setting(name).automatic if value is None else value  # None: automatic (bpm, instrument)
                 for name, value in given.items()}
        return seed_file, *(shown.get(name, gr.skip()) for name in NAMES)

    with gr.Blocks(title="midigen", delete_cache=(600, 900)) as demo:
        gr.Markdown("# 🎹 midigen", elem_id="title")
        gr.Markdown("A small recurrent network writes music (game piano, chorale, folk or Renaissance), from scratch "
                    "or continuing your MIDI. "
                    "Press **Generate**, listen, download the `.mid`.", elem_id="subtitle")
        history_state = gr.State(history.empty())
        handlers = HistorySteps(composer.studio)
        tabs = gr.Tabs(elem_id="tabs")
        with tabs, gr.Tab("Compose", id="compose"), gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                seed_file = seed_input()
                example_seeds = gr.Examples([[str(p)] for p in examples], inputs=[seed_file], label="Example seeds")
                widgets = setting_widgets(sorted((s for s in SETTINGS if not s.advanced),
                                                 key=lambda s: not s.first_on_page))
                with gr.Accordion("Advanced", open=False):
                    widgets.update(setting_widgets([s for s in SETTINGS if s.advanced]))
                with gr.Row():
                    generate_button = gr.Button("Generate", variant="primary", scale=2)
                    endless_button = gr.Button("Play on (endless)", scale=1, elem_id="endless")
            with gr.Column(scale=2, min_width=300, elem_id="result"):
                summary = gr.Markdown(notice, label="Summary", elem_id="summary")
                with gr.Row(elem_id="result-actions"):  # what acts on the result, beside it
                    continue_button = gr.Button("Continue", size="sm", min_width=90)
                    back_button = gr.Button("Back", size="sm", min_width=70)
                    forward_button = gr.Button("Forward", size="sm", min_width=80)
                    regenerate_button = gr.Button("Regenerate from here", size="sm", min_width=150)
                    link_button = gr.Button("Copy link", size="sm", min_width=90)
                    stop_button = gr.Button("Stop", size="sm", variant="stop", visible=False, elem_id="stop",
                                            min_width=70)
                take = gr.Radio(label="Take: the one Continue grows, and the first download", type="index",
                                visible=False, elem_id="take")
                link_text = gr.Textbox(visible=False)
                live = gr.HTML(None, html_template=LIVE_TEMPLATE, css_template=(WEB / "live.css").read_text(),
                               js_on_load=(WEB / "live.js").read_text(), elem_id="live")
                players = [gr.Audio(label=f"Variation {i + 1}", type="filepath", interactive=False, visible=i == 0,
                                    elem_classes="player", elem_id=f"player-{i + 1}") for i in range(max_variations)]
                gr.Markdown("Piano roll: seed in blue, new notes in orange, one lane per variation. "
                            "It follows the music as it plays; click it to jump there.")
                roll = gr.HTML(None, html_template=ROLL_TEMPLATE, css_template=(WEB / "piano_roll.css").read_text(),
                               js_on_load=(WEB / "piano_roll.js").read_text(), elem_id="piano-roll")
                midi_files = gr.File(label="Download MIDI", file_count="multiple", interactive=False)
        duet_tab(composer, tabs, widgets, seed_file)
        inputs = [seed_file, *(widgets[name] for name in NAMES)]
        outputs = [*players, midi_files, roll, summary, widgets["random_seed"]]
        private = {"api_visibility": "private"}
        # The API answers with whole files; the page hears the first take while the rest is rendered.
        api_only = gr.Button(visible=False)
        api_only.click(with_parameters(generate, (SEED_INPUT, *NAMES)), inputs, outputs, api_name="generate")
        pending, live_id = gr.State(None), gr.State(None)
        stream_address = gr.Textbox(visible=False)
        gr.Button(visible=False).click(with_parameters(endless_api, (SEED_INPUT, *NAMES)), inputs, stream_address,
                                       api_name="endless", concurrency_id="live", concurrency_limit=4)

        def streamed(trigger):
            """After ``trigger`` (a button, or an event that must succeed first): compose with a live stream of the
            first take, then the rest of the result."""
            after = trigger.click if isinstance(trigger, gr.Button) else trigger.success
            return after(with_parameters(start, (SEED_INPUT, *NAMES)), inputs, [pending, live], show_progress="minimal",
                         **private).success(finish, [pending], outputs, **private)

        # An example seed loads through the server: until it is in, Generate would write from scratch. (On `select`:
        # the page runs a trigger's events one after another, and the loading is the first on `click`.)
        starters = [generate_button, endless_button]
        example_seeds.dataset.select(None, None, starters, js=interactive_js(False, len(starters)), **private)
        example_seeds.load_input_event.then(None, None, starters, js=interactive_js(True, len(starters)), **private)
        generated = streamed(generate_button)
        continued = streamed(continue_button.click(handlers.continue_from, [history_state, take],
                                                   [seed_file, widgets["keep_seed"]], **private))
        regenerated = streamed(regenerate_button.click(
            handlers.regenerate_from, [history_state, take, widgets["keep_seed_until"]],
            [seed_file, widgets["keep_seed"], widgets["randomize"], widgets["keep_seed_until"]],
            js=REGENERATE_JS, **private))
        endless_button.click(start_endless, inputs, [live_id, live, endless_button, stop_button],
                             concurrency_id="live", concurrency_limit=4, **private)
        stop_button.click(stop_endless, [live_id, live], [live_id, live, midi_files, summary, endless_button,
                                                          stop_button],
                          js="(id, value) => [id, window.midigenLive ? window.midigenLive.stop() : 0]",
                          concurrency_id="live", **private)
        for name in STEERING:
            widgets[name].change(steer, [live_id, *(widgets[n] for n in STEERING)], None, show_progress="hidden",
                                 trigger_mode="always_last", concurrency_id="live", **private)
        for event in (generated, continued, regenerated):
            event.then(lambda: 0, None, [widgets["keep_seed_until"]], **private)  # a cut applies to one request
            shown = event.success(show_players, players, players, **private)
            shown.then(None, None, None, js=SHOW_RESULT_JS, **private)
            shown.success(handlers.remember, [history_state, seed_file, widgets["soundfont"], *outputs],
                          [history_state], **private).success(
                lambda files: handlers.take_choice(len(files or [])), [midi_files], [take], **private)
        for button, by in ((back_button, -1), (forward_button, 1)):
            button.click(handlers.go(by), [history_state], [history_state, seed_file, take, *outputs],
                         **private).success(show_players, players, players, **private).then(
                None, None, None, js=SHOW_RESULT_JS, **private)
        take.input(handlers.offer_first, [history_state, take], [midi_files], **private)
        for index, player in enumerate(players):  # tells the piano roll which lane's audio started
            player.play(None, js=f"() => {{ window.midigenRoll && window.midigenRoll.playing({index}); }}", **private)
        keep_alive = gr.Timer(max(1.0, min(60.0, composer.studio.limits.output_max_age_s / 3)))
        keep_alive.tick(handlers.keep_fresh, [history_state], [history_state, *outputs], show_progress="hidden",
                        **private)
        link_button.click(link, [seed_file, *(widgets[name] for name in NAMES), link_text], [link_text],
                          js="(...values) => [...values.slice(0, -1), window.location.href]", **private).success(
            None, [link_text], None, js=COPY_JS, **private)
        demo.load(restore, None, [seed_file, *(widgets[name] for name in NAMES)], show_progress="hidden", **private)
    return demo


DUET_SETTINGS = ("key", "density", "temperature", "top_p", "bpm", "program", "soundfont", "style", "random_seed",
                 "randomize")
# The Compose tab's settings that the Duet tab follows, handed to web/duet.js in the browser (no server asked).
DUET_SETTINGS_JS = (f"(...values) => {{ window.midigenDuetSettings = Object.fromEntries({json.dumps(DUET_SETTINGS)}"
                    ".map((name, i) => [name, values[i]]));"
                    " window.dispatchEvent(new Event('midigen-duet-settings')); }")
NEW_RANDOM_SEED = -1  # the /duet API's random_seed that asks for a new one
DUET_RECORD_JS = "() => window.midigenDuet ? JSON.stringify(window.midigenDuet.record()) : ''"


def interactive_js(interactive: bool, count: int) -> str:
    """A page-only event's code that makes its ``count`` output buttons clickable or not."""
    update = json.dumps({"__type__": "update", "interactive": interactive})
    return f"() => [{', '.join([update] * count)}]"


def duet_template() -> str:
    """The Duet tab's markup, with the samples' layout and the settings' defaults for ``web/duet.js``."""
    from midigen import samples

    layout = {"pitches": samples.sample_pitches(), "step": samples.STEP, "slot": samples.SLOT_SECONDS,
              "velocity": samples.VELOCITY, "bars": duet.DEFAULT_BARS, "max_bars": duet.MAX_BARS,
              "settings": {name: setting(name).default for name in DUET_SETTINGS}}
    return (WEB / "duet.html").read_text().format(layout=html.escape(json.dumps(layout)))


def duet_tab(composer: Composer, tabs: gr.Tabs, widgets: dict, seed_file: gr.File) -> None:
    """The Duet tab: play a phrase, midigen answers (``midigen.duet``, ``web/duet.js``); "Use as seed" hands the duet
    to the Compose tab's seed. Also the ``/duet`` API: a phrase (a MIDI file or a notes list) in, the answer out."""
    private = {"api_visibility": "private"}

    def answer(phrase_file, notes, bars, key, density, temperature, random_seed) -> tuple[dict, str]:
        """midigen's answer to a phrase, given as a MIDI file or as notes ``[{"pitch", "velocity", "start", "end"}]``
        (seconds): its notes (seconds from its first note), MIDI file (base64), tempo and random seed; and the file."""
        with answering():
            if (phrase_file is None) == (notes is None):
                raise UserError("Please give the phrase as either a MIDI file or a notes list.")
            given = {"bars": bars, "key": key, "density": density, "temperature": temperature,
                     "random_seed": None if random_seed == NEW_RANDOM_SEED else random_seed}
            chosen = duet.AnswerSettings.from_values({name: v for name, v in given.items() if v is not None})
            phrase = (duet.phrase_from_midi(phrase_file) if phrase_file is not None
                      else duet.phrase_from_notes(notes, chosen.bpm))
            reply = composer.duet.answer(phrase, chosen)
            path = composer.studio.new_folder() / "midigen-answer.mid"
            path.write_bytes(reply.midi)
        return reply.as_json(), str(path)

    def use_as_seed(record: str):
        """The duet as one MIDI file, in the Compose tab's seed."""
        with answering():
            try:
                data = duet.duet_from_json(json.loads(record or "{}"))
            except json.JSONDecodeError:
                raise UserError("The duet could not be read.") from None
            path = composer.studio.new_folder() / "midigen-duet.mid"
            path.write_bytes(data)
        return str(path), gr.Tabs(selected="compose")

    with tabs, gr.Tab("Duet", id="duet", elem_id="duet-tab") as tab:
        gr.Markdown("Play a phrase on the keys below, your computer keyboard (A W S E D F T G Y H U J K, Z and X for "
                    "the octave) or a MIDI keyboard, then pause: midigen answers in your key. Key, Density, "
                    "Temperature and Sound are the Compose tab's.")
        gr.HTML(None, html_template=duet_template(), css_template=(WEB / "duet.css").read_text(),
                js_on_load=(WEB / "duet.js").read_text(), elem_id="duet")
        seed_button = gr.Button("Use as seed", elem_id="duet-seed", size="sm")
        with gr.Column(visible=False):  # the /duet API's own inputs and outputs
            api_inputs = [seed_input(), *(as_sent(component) for component in (
                gr.JSON(label="notes"), gr.Number(duet.DEFAULT_BARS, label="bars"), gr.Textbox("auto", label="key"),
                gr.Textbox("auto", label="density"), gr.Number(setting("temperature").default, label="temperature"),
                gr.Number(NEW_RANDOM_SEED, label="random_seed")))]
            api_outputs = [gr.JSON(label="answer"), gr.File(label="answer MIDI")]
            record = gr.Textbox()
    gr.Button(visible=False).click(answer, api_inputs, api_outputs, api_name="duet")
    seed_button.click(use_as_seed, [record], [seed_file, tabs], js=DUET_RECORD_JS, **private)
    duet_inputs = [widgets[name] for name in DUET_SETTINGS]
    for name in DUET_SETTINGS:
        widgets[name].change(None, duet_inputs, None, js=DUET_SETTINGS_JS, **private)
    tab.select(None, duet_inputs, None, js=DUET_SETTINGS_JS, **private)  # read again whenever the tab is shown


def load_every_soundfont() -> None:
    """Load the other soundfonts now, and measure where their instruments sound (``ranges``; the warm-up's request
    measures the default's), so that the first listener who picks one does not wait for it (MuseScore General:
    3-6 s)."""
    from midigen import ranges
    from midigen.audio_stream import warm_synths
    from midigen.render import get_renderer

    for choice in setting("soundfont").choices[1:]:
        get_renderer(choice[1])
        ranges.table(choice[1])
        warm_synths(1, choice[1])


def page_theme() -> gr.themes.Theme:
    """Gradio's Soft theme with text dark enough to read: WCAG AA contrast (axe-core checks it in the browser
    tests). Soft's labels, help text and primary button are indigo-500 and gray-400: 2.5 to 3.6 to 1."""
    return gr.themes.Soft().set(
        block_label_text_color="*primary_700", block_title_text_color="*primary_700",
        block_info_text_color="*neutral_600", body_text_color_subdued="*neutral_600", color_accent="*primary_700",
        button_primary_background_fill="*primary_700", button_primary_background_fill_hover="*primary_800",
        checkbox_label_background_fill_selected="*primary_700")


def gpu_sampler(book, placement: str) -> tuple[Callable | None, str]:
    """``sample`` for ``Studio.run`` where ``placement`` says (``book``: the styles on the CPU), and a line for the
    log."""
    if placement == "cpu":
        return None, "sampling on the CPU (compiled)"
    if placement == "cuda":
        gpu = book.on("cuda")
        return (lambda request, seed: (gpu.generate(request, seed), [])), "sampling on the GPU (CUDA)"
    from midigen.device import ZeroGpuSampler

    try:  # imported before anything touches CUDA, as ZeroGPU requires
        import spaces

        gpu = book.on("cuda")
        gpu.load_all()  # on ZeroGPU the weights move once, here; each call then borrows a GPU
    except Exception as error:  # off Hugging Face's machines `spaces` refuses ZeroGPU mode at import
        return None, f"ZeroGPU is set but cannot be used here ({error}); sampling on the CPU"
    return ZeroGpuSampler(book.generate, gpu.generate, spaces.GPU), "sampling on ZeroGPU"


def main() -> None:
    """Load the weights, decide where sampling runs, warm up and serve the page."""
    from midigen.audio_stream import warm_synths
    from midigen.checkpoint import CheckpointError
    from midigen.device import sampling_placement
    from midigen.examples import write_examples
    from midigen.generate import Generator
    from midigen.render import audio_available
    from midigen.style_choice import StyleBook

    heap.limit_arenas()  # before the server's threads start
    # Gradio sums up its last 10,000 events with pandas after every event (4-14 ms of CPU each) for a
    # dashboard this app does not use: its last 1,000, every 1,000 events, are plenty.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
    logging.basicConfig(format="%(name)s: %(message)s")
    logging.getLogger("midigen").setLevel(logging.INFO)
    try:
        config = AppConfig.from_env()
        placement = sampling_placement()
        weights = os.environ.get("MIDIGEN_WEIGHTS")
        book = StyleBook.single(Generator(weights, device="cpu")) if weights else StyleBook("cpu")
        book.generator(book.default)
    except (CheckpointError, ValueError, RuntimeError) as error:
        sys.exit(f"midigen: cannot start: {error}")
    sample, where = gpu_sampler(book, placement)
    LOG.info(where)
    warm_up = GenerationRequest(notes=8, seconds=None, random_seed=0)
    book.generate(warm_up)  # compiles the CPU sampler before users come (cached on disk after the first start)
    if placement == "cuda" and sample is not None:
        sample(warm_up, None)
    threading.Thread(target=book.load_all, daemon=True, name="midigen-styles").start()
    # Outputs are written inside Gradio's cache folder, which Gradio serves without copying them again.
    studio = Studio(book, output_root=Path(gr.utils.get_upload_folder()) / "midigen",
                    limits=AppLimits(output_max_age_s=config.output_max_age_s))
    composer = Composer(studio, sample, ThreadPoolExecutor(config.concurrency, thread_name_prefix="midigen"),
                        config.time_limit_s, LiveHub(config.live_streams), config.endless_max_minutes)
    examples = write_examples(Path(tempfile.gettempdir()) / "midigen-examples", book.tokenizer)
    audio_ok, audio_message = audio_available()
    demo = build_demo(composer, examples, "" if audio_ok else f"Audio is unavailable on this server: {audio_message}")
    demo.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    threading.Thread(target=composer.duet.warm_up, args=(setting("soundfont").default if audio_ok else None,),
                     daemon=True, name="midigen-duet").start()  # the first duet waits for no loading
    if audio_ok:
        warm_synths(2)  # the first live streams start without making a synthesizer
        threading.Thread(target=load_every_soundfont, daemon=True, name="midigen-soundfonts").start()
    demo.launch(max_file_size="1mb", css=CSS, theme=page_theme(), js=(WEB / "page.js").read_text(),
                server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
                app_kwargs={"routes": [composer.live.route(), *composer.duet.routes()]})  # before Gradio's own


if __name__ == "__main__":
    main()
