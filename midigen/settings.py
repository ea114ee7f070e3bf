"""The settings of one request, declared once.

``SETTINGS`` lists every field a user sets: name, type, range, default, label, help text and widget.
The page's widgets, the ``/generate`` API's parameter names and order, the validator
(``clean_settings``), the command line's ``generate`` flags and the README's settings table are all
derived from it. Adding a control means one entry here plus the code that uses its value
(``generate.GenerationRequest.from_settings``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pretty_midi

from . import soundfonts, styles
from .controls import DENSITY_LEVELS, KEY_NAMES, key_index

MAX_RANDOM_SEED = 2**31 - 1


class UserError(ValueError):
    """A problem the user can fix; the message is shown as is."""


@dataclass(frozen=True)
class Setting:
    """One field of a request.

    ``kind`` is float, int, bool or str (one of ``choices``). ``low``/``high`` bound numbers: the page
    and API clamp to them; with ``app_only`` the command line has no bound (its caps protect the public
    page only).
    ``automatic`` is the number that means "choose for me" (sent as 0 or left empty).
    ``widget`` is slider, number, dropdown (with ``choices``, (label, value) pairs) or checkbox;
    ``advanced`` puts it under "Advanced"; ``first_on_page`` above the others; ``beside_previous`` puts it
    in one row with the setting before it. ``cli`` is its command-line flag, or "" when the command line has
    none (there, no ``--random-seed`` means randomize, and ``--continuation-only`` means keep_seed off).
    """

    name: str
    kind: type
    default: float | int | bool
    label: str
    help: str
    widget: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    automatic: float | None = None
    automatic_means: str = "automatic"
    app_only: bool = False
    advanced: bool = False
    beside_previous: bool = False
    first_on_page: bool = False
    choices: tuple[tuple[str, int | str], ...] = ()
    choices_text: str = ""  # the README's words for the choices, when listing them all would be too long
    cli: str = ""

    def show(self, value) -> str:
        """``value`` as the README writes it."""
        if self.kind is str:
            return str(value)
        if self.kind is bool:
            return str(value).lower()
        return f"{value:g}" if self.kind is float else str(int(value))

    @property
    def range_text(self) -> str:
        if self.kind is bool:
            return "true / false"
        if self.kind is str:
            return self.choices_text or ", ".join(str(value) for _, value in self.choices)
        text = f"{self.show(self.low)}-{self.show(self.high)}"
        return text if self.automatic is None else f"{self.show(self.automatic)} = {self.automatic_means}, else {text}"


KEYS = (("Auto: the seed's key (from scratch, a random one)", "auto"), ("Free: no key asked", "free"),
        *((name, name) for name in KEY_NAMES))
DENSITIES = (("Auto: the seed's (from scratch, the model's choice)", "auto"),
             *((level.capitalize(), level) for level in DENSITY_LEVELS))
PROGRAMS = (("Auto: the style's (game piano: piano; chorale: organ; folk: violin; renaissance: choir)", -1),
            *((f"{n} {pretty_midi.program_to_instrument_name(n)}", n) for n in range(128)))
STYLES = (("Auto: the seed's (from scratch, game piano)", styles.AUTO),
          *((style.label, style.name) for style in styles.STYLES))


def soundfont_setting(installed: tuple[soundfonts.Soundfont, ...]) -> Setting:
    """The ``soundfont`` setting: the ``installed`` soundfonts as choices, the first the default (with none, the
    catalogue's first, and rendering says what is missing)."""
    offered = installed or soundfonts.CATALOGUE[:1]
    return Setting("soundfont", str, offered[0].name, "Sound",
                   "The General MIDI soundfont the audio is played with (the new music stays where its instrument "
                   "sounds).", "dropdown",
                   advanced=True, choices=tuple((font.label, font.name) for font in offered),
                   choices_text=", ".join(font.name for font in soundfonts.CATALOGUE) + " (those installed)",
                   cli="--soundfont")


SETTINGS: tuple[Setting, ...] = (
    Setting("temperature", float, 0.95, "Temperature", "Low: safe and repetitive. High: adventurous.", "slider",
            0.05, 2.0, 0.05, cli="--temperature"),
    Setting("top_p", float, 0.95, "Top-p",
            "Nucleus sampling: keep the most likely choices whose probability adds up to p (1 = plain sampling).",
            "slider", 0.05, 1.0, 0.01, advanced=True, cli="--top-p"),
    Setting("seconds", float, 30.0, "Length (seconds)", "Seconds of new music.", "slider", 1.0, 60.0, 1.0,
            app_only=True, cli="--seconds"),
    Setting("bpm", float, 0.0, "Tempo (BPM, 0 = the seed's or the model's)",
            "Beats per minute of the new music; 0: the seed's, or the model's choice. A kept seed keeps its own.",
            "number", 40.0, 240.0,
            automatic=0.0, advanced=True, cli="--bpm"),
    Setting("program", int, -1, "Instrument (General MIDI)", "General MIDI program of the new music.", "dropdown",
            0, 127, automatic=-1, automatic_means="the style's", advanced=True, cli="--program",
            choices=PROGRAMS),
    Setting("random_seed", int, 0, "Random seed", "The same settings and random seed give the same music.",
            "number", 0, MAX_RANDOM_SEED, advanced=True, cli="--random-seed"),
    Setting("randomize", bool, True, "Randomize", "Ignore the random seed and draw a new one (always shown).",
            "checkbox", advanced=True, beside_previous=True),
    Setting("key", str, "auto", "Key", "The key to write in: the seed's, one you choose, or free.", "dropdown",
            choices=KEYS, choices_text="auto, free, or one of the 24 major and minor keys ('D minor', 'Eb major')",
            cli="--key"),
    Setting("density", str, "auto", "Density", "How many notes per beat: the seed's, or from sparse to dense.",
            "dropdown", choices=DENSITIES, cli="--density"),
    Setting("variations", int, 1, "Variations", "Pieces sampled together, one player each.", "slider", 1, 4, 1,
            app_only=True, cli="--variations"),
    Setting("keep_seed", bool, True, "Keep the seed in the output", "Off: the output holds only the new music.",
            "checkbox", advanced=True),
    Setting("keep_seed_until", float, 0.0, "Regenerate from (seconds)",
            "Keep the seed only up to this time, then compose the rest again (0: keep all of it).", "number",
            0.0, 3600.0, automatic=0.0, automatic_means="the whole seed", cli="--keep-seed-until"),
    Setting("repetition", float, 0.5, "Repetition",
            "Chance that a two-bar phrase is an earlier one played again (0: never; never two in a row).", "slider",
            0.0, 1.0, 0.05, advanced=True, cli="--repetition"),
    soundfont_setting(soundfonts.installed()),
    Setting("style", str, styles.AUTO, "Style",
            "The music the model learned: game piano, Bach chorales, fiddle tunes or Palestrina. Auto: the style "
            "whose model finds the seed likeliest; from scratch, game piano.", "dropdown", choices=STYLES,
            first_on_page=True, cli="--style"),
    # last: the API's parameters are positional, new ones go at the end
)
BY_NAME = {setting.name: setting for setting in SETTINGS}
NAMES = tuple(BY_NAME)


def setting(name: str) -> Setting:
    return BY_NAME[name]


def defaults() -> dict[str, float | int | bool]:
    return {s.name: s.default for s in SETTINGS}


def clean_number(spec: Setting, value) -> float | int | None:
    """``value`` as a number inside the setting's range (clamped); None for "automatic"."""
    if spec.automatic is not None and (value is None or value == ""):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UserError(f"{spec.name} must be a number")
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"{spec.name} must be a number") from None
    if not math.isfinite(number):
        raise UserError(f"{spec.name} must be a finite number")
    if spec.kind is int and number != int(number):
        raise UserError(f"{spec.name} must be a whole number")
    if number == spec.automatic:
        return None
    number = min(max(number, spec.low), spec.high)
    return int(number) if spec.kind is int else number


def clean_flag(spec: Setting, value) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "True", 1):
        return True
    if value in ("false", "False", 0, None):
        return False
    raise UserError(f"{spec.name} must be true or false")


def clean_choice(spec: Setting, value) -> str:
    """One of the setting's choices, however a key is spelled ('eb major', 'D# Minor')."""
    text = str(value).strip().lower() if isinstance(value, str) else None
    for _, choice in spec.choices:
        if text == choice.lower():
            return choice
    if spec.name == "key" and text is not None:
        try:
            return KEY_NAMES[key_index(text)]
        except ValueError:
            pass
    raise UserError(f"{spec.name} must be {spec.range_text}")


def clean_settings(values: dict) -> dict:
    """Every setting from raw ``values`` (missing ones take their default): numbers clamped to their
    range, automatic values as None; non-numbers, NaN, infinities and unknown choices raise ``UserError``."""
    cleaned = {}
    for spec in SETTINGS:
        value = values.get(spec.name, spec.default)
        clean = {bool: clean_flag, str: clean_choice}.get(spec.kind, clean_number)
        cleaned[spec.name] = clean(spec, value)
    return cleaned


def check_range(name: str, value: float | None) -> None:
    """Raise ``ValueError`` when ``value`` lies outside the range of setting ``name`` (None passes).
    Used where values are not clamped: the command line and ``GenerationRequest``."""
    spec = BY_NAME[name]
    if value is None or spec.app_only:
        return
    if not (math.isfinite(value) and spec.low <= value <= spec.high):
        raise ValueError(f"{name} must be between {spec.show(spec.low)} and {spec.show(spec.high)}")


def markdown_table() -> str:
    """The README's table of settings, in API order."""
    rows = ["| API name | on the page | range | default | what it does |", "| --- | --- | --- | --- | --- |"]
    for spec in SETTINGS:
        place = f"Advanced → {spec.label}" if spec.advanced else spec.label
        rows.append(f"| `{spec.name}` | {place} | {spec.range_text} | {spec.show(spec.default)} | {spec.help} |")
    return "\n".join(rows)
