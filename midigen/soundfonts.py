"""The General MIDI soundfonts a piece may sound through: the ``soundfont`` setting's choices.

Only files are looked at here (no FluidSynth), so ``settings`` can import this anywhere. A soundfont
missing on the machine is left out of the choices, with one line in the log. ``$MIDIGEN_SOUNDFONT``
(``render.find_soundfont``) replaces the default choice's file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pretty_midi

log = logging.getLogger("midigen.soundfonts")


@dataclass(frozen=True)
class Soundfont:
    """One choice: its setting value, its label on the page, where it may be installed (the first file
    found is used) and how loud generated piano pieces sound through it, relative to FluidR3 at the same gain
    (the live streams, which cannot normalize, make up for it)."""

    name: str
    label: str
    package: str  # the Debian package that installs it
    files: tuple[Path, ...]
    loudness: float = 1.0

    @property
    def path(self) -> Path | None:
        return next((file for file in self.files if file.is_file()), None)


# Default first. FluidR3 is the brightest and clearest piano of the three, in wide stereo, and loads in a
# tenth of a second; MuseScore General's is darker (brighter only when struck hard), TimGM6mb's mono and muffled.
CATALOGUE: tuple[Soundfont, ...] = (
    Soundfont("fluidr3", "FluidR3 GM (default)", "fluid-soundfont-gm",
              (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),)),
    Soundfont("musescore", "MuseScore General (warm)", "musescore-general-soundfont",
              (Path("/usr/share/sounds/sf3/MuseScore_General_Full.sf3"),
               Path("/usr/share/sounds/sf3/MuseScore_General.sf3")),
              loudness=0.75),
    Soundfont("timgm6mb", "TimGM6mb (small, mellow)", "timgm6mb-soundfont",
              (Path("/usr/share/sounds/sf2/TimGM6mb.sf2"), Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"),
              loudness=0.75),
)
BY_NAME = {soundfont.name: soundfont for soundfont in CATALOGUE}


def installed(catalogue: tuple[Soundfont, ...] = CATALOGUE) -> tuple[Soundfont, ...]:
    """The soundfonts of ``catalogue`` found on this machine, in order; one log line for each missing one."""
    found = []
    for soundfont in catalogue:
        if soundfont.path is None:
            log.warning("soundfont %s left out of the choices: %s not found (apt install %s)", soundfont.name,
                        soundfont.files[0], soundfont.package)
        else:
            found.append(soundfont)
    return tuple(found)


def loudness_of(path: Path) -> float:
    """The ``loudness`` of the soundfont at ``path`` (1 for a file not in the catalogue)."""
    return next((soundfont.loudness for soundfont in CATALOGUE if path in soundfont.files), 1.0)
