"""midigen: a GRU that writes piano music from note/chord tokens."""

import contextlib
import io

# pretty_midi imports pyfluidsynth, which prints its library path on stdout when $CI is set;
# import it once here, quietly, so command output stays clean.
with contextlib.redirect_stdout(io.StringIO()):
    import pretty_midi  # noqa: F401
