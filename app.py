"""midigen web demo: a thin Gradio layer over ``midigen.studio``.

Run ``python app.py``; the API endpoint ``/generate`` is usable with gradio_client.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import gradio as gr
import pretty_midi

from midigen.checkpoint import DEFAULT_WEIGHTS, CheckpointError
from midigen.examples import write_examples
from midigen.generate import GenerationRequest, Generator
from midigen.render import audio_available
from midigen.studio import RANGES, AppLimits, Studio, UserError, clean_settings

try:  # Hugging Face ZeroGPU: sampling runs on a GPU lent for the call
    import spaces
except ImportError:
    spaces = None

LOG = logging.getLogger("midigen.app")
LIMITS = AppLimits()
TIME_LIMIT_S = float(os.environ.get("MIDIGEN_TIME_LIMIT", "30"))
CONCURRENCY = int(os.environ.get("MIDIGEN_CONCURRENCY", "2"))
QUEUE_SIZE = int(os.environ.get("MIDIGEN_QUEUE_SIZE", "16"))
DEFAULTS = GenerationRequest()
MAX_VARIATIONS = LIMITS.max_variations
OUTPUT_COUNT = MAX_VARIATIONS + 4  # players, MIDI files, piano roll, summary, random seed
PROGRAMS = [(f"{n} {pretty_midi.program_to_instrument_name(n)}", n) for n in range(128)]

try:
    generator = Generator(os.environ.get("MIDIGEN_WEIGHTS") or DEFAULT_WEIGHTS, device="cpu")
except CheckpointError as error:
    sys.exit(f"midigen: cannot start: {error}")
generator.generate(GenerationRequest(notes=8, seconds=None, random_seed=0))  # load compiled code before users come
# Outputs are written inside Gradio's cache folder, which Gradio serves without copying them again.
studio = Studio(generator, output_root=Path(gr.utils.get_upload_folder()) / "midigen", limits=LIMITS)
workers = ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="midigen")
EXAMPLES = write_examples(Path(tempfile.gettempdir()) / "midigen-examples", generator.tokenizer)
AUDIO_OK, AUDIO_MESSAGE = audio_available()

if spaces is not None:

    @spaces.GPU(duration=30)
    def sample(request, seed_midi):
        return generator.to("cuda").generate(request, seed_midi)
else:
    sample = None


def as_sent(component: gr.components.Component) -> gr.components.Component:
    """``component`` with Gradio's own input checks turned off: its value reaches ``clean_settings`` as
    sent, so an API caller who sends a non-number gets a short message instead of an opaque error."""
    component.preprocess = lambda payload: payload
    return component


def generate(seed_file, temperature, top_p, seconds, bpm, program, random_seed, randomize, variations, keep_seed,
             progress=gr.Progress()):
    """Compose music, optionally continuing ``seed_file``; returns audio players, MIDI files,
    the piano roll, a summary and the random seed used."""
    try:
        request = clean_settings(temperature, top_p, seconds, bpm, program, random_seed, randomize, variations,
                                 keep_seed)
        job = workers.submit(studio.run, seed_file, request, sample, lambda f, m: progress(f, desc=m))
        result = job.result(timeout=TIME_LIMIT_S)
    except UserError as error:
        raise gr.Error(str(error), print_exception=False) from None
    except FutureTimeout:
        raise gr.Error("This took too long; please try a shorter length.", print_exception=False) from None
    except Exception:
        LOG.exception("generation failed")
        raise gr.Error("Something went wrong while composing; please try again.", print_exception=False) from None
    audio = [str(p) for p in result.audio_paths]
    audio += [None] * (MAX_VARIATIONS - len(audio))
    summary = result.summary + "".join(f"\n\n{n}" for n in result.notices)
    midi = [str(p) for p in result.midi_paths]
    return *audio, midi, str(result.pianoroll_path), summary, result.random_seed


def show_players(*audio):
    """Show one player per variation that has audio (the first always)."""
    return [gr.Audio(visible=index == 0 or value is not None) for index, value in enumerate(audio)]


def remember(history, seed_file, *outputs):
    """Push this step (seed and outputs) so Back can return to it."""
    return [*history, {"seed": seed_file, "outputs": list(outputs)}][-20:]


def continue_from_last(history):
    """Use the latest result as the new seed (kept in the output, so the piece grows).
    With nothing generated yet, Continue simply generates a first piece."""
    if not history or not history[-1]["outputs"][MAX_VARIATIONS]:
        gr.Info("Generate something first, then Continue grows it: composing a first piece now.")
        return gr.skip(), gr.skip()
    return history[-1]["outputs"][MAX_VARIATIONS][0], True


def go_back(history):
    """Drop the latest step and show the one before it."""
    if len(history) < 2:
        gr.Warning("There is no earlier step to go back to.")
        return [gr.skip()] * (2 + OUTPUT_COUNT)
    history = history[:-1]
    outputs = history[-1]["outputs"]
    return history, history[-1]["seed"], *outputs


CSS = """
#title { text-align: center; margin-bottom: 0; }
#subtitle { text-align: center; margin-top: 0; color: var(--body-text-color-subdued); }
"""

with gr.Blocks(title="midigen", delete_cache=(600, 900)) as demo:
    gr.Markdown("# 🎹 midigen", elem_id="title")
    gr.Markdown("A small recurrent network writes piano music, from scratch or continuing your MIDI. "
                "Press **Generate**, listen, download the `.mid`.", elem_id="subtitle")
    history = gr.State([])
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            seed_file = gr.File(label="Seed MIDI (optional)", file_types=[".mid", ".midi"], type="filepath")
            gr.Examples([[str(p)] for p in EXAMPLES], inputs=[seed_file], label="Example seeds")
            seconds = as_sent(gr.Slider(*RANGES["seconds"], value=DEFAULTS.seconds, step=1,
                                        label="Length (seconds)"))
            temperature = as_sent(gr.Slider(*RANGES["temperature"], value=DEFAULTS.temperature, step=0.05,
                                            label="Temperature", info="Low: safe and repetitive. High: adventurous."))
            variations = as_sent(gr.Slider(*RANGES["variations"], value=1, step=1, label="Variations"))
            with gr.Accordion("Advanced", open=False):
                top_p = as_sent(gr.Slider(*RANGES["top_p"], value=DEFAULTS.top_p, step=0.01, label="Top-p"))
                bpm = as_sent(gr.Number(value=0, label="Tempo (BPM, 0 = the seed's or the model's)", minimum=0,
                                        maximum=RANGES["bpm"][1]))
                program = as_sent(gr.Dropdown(PROGRAMS, value=0, label="Instrument (General MIDI)"))
                with gr.Row():
                    random_seed = as_sent(gr.Number(value=0, precision=0, label="Random seed", minimum=0,
                                                    maximum=RANGES["random_seed"][1]))
                    randomize = gr.Checkbox(value=True, label="Randomize")
                keep_seed = gr.Checkbox(value=True, label="Keep the seed in the output")
            with gr.Row():
                generate_button = gr.Button("Generate", variant="primary", scale=2)
                continue_button = gr.Button("Continue", scale=1)
                back_button = gr.Button("Back", scale=1)
        with gr.Column(scale=2, min_width=300):
            notice = "" if AUDIO_OK else f"Audio is unavailable on this server: {AUDIO_MESSAGE}"
            summary = gr.Markdown(notice, label="Summary")
            players = [gr.Audio(label=f"Variation {i + 1}", type="filepath", interactive=False, visible=i == 0,
                                elem_classes="player") for i in range(MAX_VARIATIONS)]
            gr.Markdown("Piano roll: seed in blue, new notes in orange.")
            roll = gr.Image(show_label=False, type="filepath", interactive=False, buttons=[], elem_id="piano-roll")
            midi_files = gr.File(label="Download MIDI", file_count="multiple", interactive=False)
    inputs = [seed_file, temperature, top_p, seconds, bpm, program, random_seed, randomize, variations, keep_seed]
    outputs = [*players, midi_files, roll, summary, random_seed]
    private = {"api_visibility": "private"}
    generated = generate_button.click(generate, inputs, outputs, api_name="generate")
    continued = continue_button.click(continue_from_last, [history], [seed_file, keep_seed], **private).success(
        generate, inputs, outputs, **private)
    for event in (generated, continued):
        event.success(show_players, players, players, **private).success(
            remember, [history, seed_file, *outputs], [history], **private)
    back_button.click(go_back, [history], [history, seed_file, *outputs], **private).success(
        show_players, players, players, **private)

demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)

if __name__ == "__main__":
    demo.launch(max_file_size="1mb", css=CSS, theme=gr.themes.Soft(),
                server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"))
