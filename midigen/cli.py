"""Command line: ``python -m midigen {prepare,train,generate,endless,evaluate,roundtrip,render,styles,corpus}``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from pathlib import Path

from .checkpoint import ModelConfig, TrainConfig
from .settings import BY_NAME, SETTINGS, clean_choice, defaults, setting
from .styles import BY_NAME as STYLE_SPECS
from .styles import DEFAULT as DEFAULT_STYLE_SPEC

STYLE_NAMES, DEFAULT_STYLE = list(STYLE_SPECS), DEFAULT_STYLE_SPEC.name


def add_prepare(commands) -> None:
    p = commands.add_parser("prepare", help="tokenize a folder of MIDI files into a token cache for training")
    p.add_argument("--data", required=True, help="folder searched recursively for .mid/.midi files")
    p.add_argument("--out", required=True, help="token cache folder (created, or brought up to date)")
    p.add_argument("--workers", type=int, help="processes tokenizing at once (default: all usable cores)")


def run_prepare(args) -> None:
    from .prepare import prepare

    if args.workers is not None and args.workers < 1:
        raise ValueError("--workers must be at least 1")
    print(prepare(args.data, args.out, workers=args.workers))


def add_train(commands) -> None:
    p = commands.add_parser("train", help="train a model on a folder of MIDI files or a token cache")
    p.add_argument("--data", required=True,
                   help="token cache made by prepare, or a folder searched recursively for .mid/.midi files "
                        "(then prepared into OUT.tokens)")
    p.add_argument("--out", required=True, help="checkpoint path without suffix, e.g. weights/mymodel")
    for config, skip in ((TrainConfig, ()), (ModelConfig, ("vocab_size", "control_size"))):
        for item in fields(config):
            if item.name not in skip:
                words = item.metadata.get("help", item.name.replace("_", " "))
                p.add_argument(f"--{item.name.replace('_', '-')}", type=type(item.default), default=item.default,
                               help=f"{words} (default {item.default})")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--resume", action="store_true", help="continue from OUT.train.* if present")


def run_train(args) -> None:
    from .train import train

    config = TrainConfig(**{item.name: getattr(args, item.name) for item in fields(TrainConfig)})
    model = {item.name: getattr(args, item.name) for item in fields(ModelConfig)
             if item.name not in ("vocab_size", "control_size")}
    meta = train(args.data, args.out, config, model, device=args.device, resume=args.resume)
    print(f"validation NLL: {meta['validation']}")


def add_generate(commands) -> None:
    p = commands.add_parser("generate", help="write new music, from scratch or continuing a seed MIDI")
    p.add_argument("--out", required=True, help="output .mid path (with --variations V: OUT-1.mid ... OUT-V.mid)")
    p.add_argument("--seed-midi", help="MIDI file to continue")
    p.add_argument("--weights", help="checkpoint path without suffix (default: the shipped style --style names)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--notes", type=int, help="number of new notes (instead of --seconds)")
    add_setting_flags(p, [spec.name for spec in SETTINGS], length)
    p.add_argument("--continuation-only", action="store_true", help="leave the seed out of the output")
    p.add_argument("--audio", help="also render audio to this file (.mp3 or .wav)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def add_setting_flags(p, names: list[str], length=None) -> None:
    """A flag for each of the settings ``names`` that has one, as the page and the API have them (``seconds`` in
    the ``length`` group)."""
    for spec in SETTINGS:
        if spec.cli and spec.name in names:
            group = length if spec.name == "seconds" else p
            bound = "" if spec.app_only else f"{spec.range_text}; "
            shown = "random" if spec.name == "random_seed" else spec.show(spec.default)
            group.add_argument(spec.cli, dest=spec.name, type=spec.kind,
                               help=f"{spec.help.rstrip('.')} ({bound}default {shown})")


def request_from_args(args):
    """The ``GenerationRequest`` of ``generate``'s (or ``endless``'s) flags: the settings' defaults, no caps on
    length."""
    from .generate import GenerationRequest

    given = {s.name: getattr(args, s.name, None) for s in SETTINGS if s.cli}
    given = {name: clean_choice(BY_NAME[name], value) if BY_NAME[name].kind is str else value
             for name, value in given.items() if value is not None}
    values = {**defaults(), **given, "randomize": args.random_seed is None,
              "keep_seed": not getattr(args, "continuation_only", False)}
    request = GenerationRequest.from_settings(values)
    notes = getattr(args, "notes", None)
    return request if notes is None else replace(request, notes=notes, seconds=None)


def read_seed(path: str, request):
    """The seed file a command continues (cut at ``request.keep_seed_until``); what the loader repaired in it
    is reported on stderr."""
    from .midi_io import MidiLimits, read_midi
    from .splice import Seed, cut

    file = read_midi(path, MidiLimits(max_bytes=64 << 20, max_notes=10**7))
    for notice in file.notices:
        print(f"note: {notice}", file=sys.stderr)
    return Seed(cut(file, request.keep_seed_until) if request.keep_seed_until else file)


def writer(args):
    """What writes the music of ``generate`` and ``endless``: the model ``--weights`` names (its style then
    the default's), or every shipped style (``--style``)."""
    from .generate import Generator
    from .style_choice import StyleBook

    if args.weights:
        return StyleBook.single(Generator(args.weights, args.device))
    return StyleBook(args.device)


def run_generate(args) -> None:

    request = request_from_args(args)
    seed = read_seed(args.seed_midi, request) if args.seed_midi else None
    results = writer(args).generate(request, seed)
    out = Path(args.out)
    for index, result in enumerate(results, start=1):
        path = out if len(results) == 1 else out.with_name(f"{out.stem}-{index}{out.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(result.data)
        print(f"{path}: {len(result.continuation.notes)} new notes, {result.seconds:.1f} s, "
              f"random seed {result.random_seed}, style {result.style}")
        if args.audio:
            from .render import get_renderer, write_audio

            audio = Path(args.audio)
            audio = audio if len(results) == 1 else audio.with_name(f"{audio.stem}-{index}{audio.suffix}")
            write_audio(get_renderer(request.soundfont).render(result.midi), audio)
            print(f"{audio}: audio")


ENDLESS_SETTINGS = ["temperature", "top_p", "bpm", "program", "random_seed", "key", "density", "repetition", "style"]
STEERABLE = ("key", "density", "temperature", "repetition")


def add_endless(commands) -> None:
    p = commands.add_parser("endless", help="an endless stream of new music, steered as it goes, written as fast as "
                                           "the machine allows: its first MINUTES as one MIDI file")
    p.add_argument("--minutes", type=float, required=True, help="minutes of new music to write")
    p.add_argument("--out", required=True, help="output .mid path")
    p.add_argument("--seed-midi", help="MIDI file to continue (kept in the output, as generate keeps it)")
    p.add_argument("--weights", help="checkpoint path without suffix (default: the shipped style --style names)")
    add_setting_flags(p, ENDLESS_SETTINGS)
    p.add_argument("--change", action="append", default=[], metavar="MINUTE:NAME=VALUE",
                   help="from MINUTE on, set NAME (key, density, temperature or repetition) to VALUE, as a listener "
                        "steering the stream would, e.g. '10:key=D minor' or '20:density=sparse' (repeatable)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def parse_change(text: str, request) -> tuple[float, dict]:
    """``MINUTE:NAME=VALUE`` as (minute, {name: value}), the value checked against ``request``."""
    minute, colon, rest = text.partition(":")
    name, equals, value = rest.partition("=")
    name, value = name.strip(), value.strip()
    try:
        minute = float(minute)
    except ValueError:
        minute = None
    if not (colon and equals and minute is not None and minute >= 0 and value):
        raise ValueError(f"--change must look like MINUTE:NAME=VALUE, e.g. '10:key=D minor', not {text!r}")
    if name not in STEERABLE:
        raise ValueError(f"--change {text!r}: NAME must be one of {', '.join(STEERABLE)}")
    try:
        if BY_NAME[name].kind is str:
            value = clean_choice(BY_NAME[name], value)
        else:
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{name} must be a number") from None
        replace(request, **{name: value})
    except ValueError as error:
        raise ValueError(f"--change {text!r}: {error}") from None
    return minute, {name: value}


def run_endless(args) -> None:
    from .endless import EndlessStream, play

    request = request_from_args(args)
    if not args.minutes > 0:
        raise ValueError("--minutes must be a positive number")
    changes = [parse_change(text, request) for text in args.change]
    seed = read_seed(args.seed_midi, request) if args.seed_midi else None
    stream = EndlessStream(writer(args).choose(request, seed), request, seed)
    notes = play(stream, args.minutes, changes)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(stream.midi_bytes(until=args.minutes * 60.0))
    print(f"{out}: {notes:,} new notes, {args.minutes:.1f} min, random seed {stream.random_seed}, "
          f"style {stream.request.style}")


def add_evaluate(commands) -> None:
    p = commands.add_parser("evaluate", help="validation NLL, statistics of generated vs real pieces, "
                                             "continuations against their seeds, key and density controls")
    p.add_argument("--data", help="folder of real MIDI files (the style's collection)")
    p.add_argument("--style", default=DEFAULT_STYLE, choices=STYLE_NAMES, help="the shipped style to evaluate")
    p.add_argument("--weights", help="checkpoint path without suffix (default: the style's)")
    p.add_argument("--collections", metavar="STYLE=DIR,...",
                   help="instead: compare the styles, each with its collection's validation files (Auto's picks "
                        "from 40-note seeds; statistics closest to their own collection)")
    p.add_argument("--validation-only", action="store_true",
                   help="use only the files the checkpoint held out from training")
    p.add_argument("--pieces", type=int, default=48, help="pieces to generate from scratch")
    p.add_argument("--notes", type=int, default=2000, help="notes per generated piece")
    p.add_argument("--seed-lengths", default="40,150,500", help="continuations: seed lengths in notes")
    p.add_argument("--continuation-notes", type=int, default=150, help="continuations: new notes per seed")
    p.add_argument("--seeds-per-piece", type=int, default=10, help="continuations: random seeds per seed")
    p.add_argument("--key-pieces", type=int, default=48,
                   help="controls: 30 s pieces from scratch in a chosen key (one per key, cycling; 0: skip)")
    p.add_argument("--endless-minutes", type=float, default=60.0,
                   help="endless streams: minutes of each, cut into one-minute windows (0: skip; about 3 s per hour)")
    p.add_argument("--endless-streams", type=int, default=3,
                   help="endless streams from scratch with key auto (besides one in a named key and one that changes "
                        "key and density half-way; 0: skip)")
    p.add_argument("--temperature", type=float, default=setting("temperature").default)
    p.add_argument("--top-p", type=float, default=setting("top_p").default)
    p.add_argument("--random-seed", type=int, default=0)


def run_evaluate(args) -> None:
    from .controls import KEY_NAMES
    from .evaluate import (
        compare,
        continuation_scores,
        density_control,
        endless_statistics,
        format_continuations,
        format_endless,
        format_table,
        generated_scores,
        key_control,
        long_form,
        negative_log_likelihood,
        real_scores,
    )
    from .generate import Generator
    from .styles import style

    if args.collections:
        return evaluate_styles(args)
    if not args.data:
        raise ValueError("give --data (or --collections)")
    generator = Generator(args.weights or style(args.style).weights, "cpu", style(args.style))
    only = None
    if args.validation_only:
        only = set(generator.checkpoint.info["training"]["data"]["validation_files"])
    real = real_scores(generator, args.data, only)
    if not real:
        raise ValueError(f"no usable MIDI files in {args.data}")
    nll = negative_log_likelihood(generator, real)
    print(f"validation NLL over {nll['pieces']} pieces: {nll['nll_per_note']:.3f} nats/note, "
          f"{nll['nll_per_token']:.3f} nats/token (controls unknown)")
    if "controlled" in nll:
        print(f"  with each window's own controls: {nll['controlled']['nll_per_note']:.3f} nats/note, "
              f"{nll['controlled']['nll_per_token']:.3f} nats/token")
    sampling = {"temperature": args.temperature, "top_p": args.top_p}
    lengths = [int(x) for x in args.seed_lengths.split(",") if x.strip()]
    print(f"\ncontinuations of {args.continuation_notes} notes, {args.seeds_per_piece} random seeds per seed "
          "(score: 0 = another piece's real continuation, 1 = this piece's; in key: share of continuations "
          "estimated in the seed's key, generated and real; drones: share where two pitch classes sound over "
          "80 % of the time)")
    print(format_continuations(continuation_scores(generator, real, lengths, args.continuation_notes,
                                                   args.seeds_per_piece, args.random_seed, **sampling)))
    generated = generated_scores(generator, args.pieces, args.notes, args.temperature, args.top_p, args.random_seed)
    print(f"\n{args.pieces} generated pieces of {args.notes} notes, temperature {args.temperature}, top-p {args.top_p}")
    print(format_table(compare(generator, real, generated)))
    print("\nlong form (first against last 200 notes; distinct 8-note n-grams; bars repeating the one before):")
    for label, pieces in (("held-out real", [s for _, s in real]), ("generated", generated)):
        form = long_form(pieces, generator.tokenizer.config.steps_per_beat)
        if form["pieces"]:
            print(f"  {label:<14} key distance {form['first_last_key_distance']:.2f}, "
                  f"distinct 8-grams {form['distinct_8gram_share']:.2f}, "
                  f"repeated bars {form['repeated_bar_share']:.2f} ({form['pieces']} pieces)")
    if generator.checkpoint.model_config.control_size and args.key_pieces:
        keys = [KEY_NAMES[i % len(KEY_NAMES)] for i in range(args.key_pieces)]
        share = key_control(generator, keys, random_seed=args.random_seed, **sampling)
        print(f"\nkey control: {share:.0%} of {len(keys)} pieces of 30 s from scratch are in the key asked for")
        density = density_control(generator, random_seed=args.random_seed, **sampling)
        print("density control (notes per beat, 30 s from scratch): "
              + ", ".join(f"{level} {value:.2f}" for level, value in density.items()))
    if generator.checkpoint.model_config.control_size and args.endless_minutes > 0 and args.endless_streams > 0:
        result = endless_statistics(generator, real, args.endless_minutes, args.endless_streams, args.random_seed,
                                    **sampling)
        print(f"\nendless streams of {args.endless_minutes:g} minutes from scratch ({args.endless_streams} with key "
              f"auto, one in a named key; {result['windows']} one-minute windows, against {result['real_windows']} "
              "of the real pieces; drone: two pitch classes over 80 % of the time; top_duration: share of the "
              "commonest duration)")
        print(format_endless(result))


def evaluate_styles(args) -> None:
    """``evaluate --collections``: how far apart the styles are, and how well Auto tells them apart."""
    from .evaluate import auto_pick_shares, real_scores, style_closeness
    from .style_choice import StyleBook

    book = StyleBook("cpu")
    real = {}
    for item in args.collections.split(","):
        name, _, folder = item.partition("=")
        generator = book.generator(name.strip())
        held_out = set(generator.checkpoint.info["training"]["data"]["validation_files"])
        real[name.strip()] = [score for _, score in real_scores(generator, folder, held_out)]
    print("Auto's picks from the first 40 notes of each validation piece (share that picks its own style):")
    for name, share in auto_pick_shares(book, real).items():
        print(f"  {name:<12} {share:.0%} of {len(real[name])}")
    print(f"\nstatistics on which {args.pieces} pieces of {args.notes} notes from scratch are closer to their own "
          "collection than to any other:")
    for name, (wins, total) in style_closeness(book, real, args.pieces, args.notes, args.random_seed).items():
        print(f"  {name:<12} {wins} of {total}")


def add_roundtrip(commands) -> None:
    p = commands.add_parser("roundtrip", help="share of notes that survive MIDI -> tokens -> MIDI")
    p.add_argument("data", help="folder of MIDI files")
    p.add_argument("--verbose", action="store_true", help="one line per file")


def run_roundtrip(args) -> None:
    import warnings

    import pretty_midi

    from .prepare import midi_files
    from .tokenizer import Tokenizer, roundtrip_accuracy

    tokenizer = Tokenizer()
    matched = total = 0
    for path in midi_files(args.data):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m, t = roundtrip_accuracy(tokenizer, pretty_midi.PrettyMIDI(str(path)))
        except Exception as error:  # MIDI parsers raise many error types
            print(f"{path}: unreadable ({error})")
            continue
        matched, total = matched + m, total + t
        if args.verbose:
            print(f"{path}: {m}/{t} = {m / max(t, 1):.2%}")
    print(f"{matched}/{total} notes reproduced ({matched / max(total, 1):.2%}): exact pitch, "
          f"onset and duration within one grid step (1/{tokenizer.config.steps_per_beat} beat)")


def add_styles(commands) -> None:
    commands.add_parser("styles", help="list the styles, one a line: the name, then the description")


def run_styles(args) -> None:
    from .styles import listing

    print(listing())


def add_corpus(commands) -> None:
    from .corpus import COLLECTIONS

    p = commands.add_parser("corpus", help="write a style's public-domain collection (music21's corpus) as MIDI "
                                           "files to train on")
    p.add_argument("--style", required=True, choices=list(COLLECTIONS))
    p.add_argument("--out", required=True, help="folder for train/*.mid and validation/*.mid")
    p.add_argument("--limit", type=int, help="corpus files to take (a fixed sample; default: all)")
    p.add_argument("--workers", type=int, help="processes parsing at once (default: all usable cores)")


def run_corpus(args) -> None:
    from .corpus import export

    print(export(args.style, args.out, limit=args.limit, workers=args.workers))


def add_render(commands) -> None:
    p = commands.add_parser("render", help="render a MIDI file to audio with FluidSynth")
    p.add_argument("midi", help="input .mid")
    p.add_argument("audio", help="output .mp3 or .wav")
    add_setting_flags(p, ["soundfont"])


def run_render(args) -> None:
    from .render import render_file

    soundfont = clean_choice(setting("soundfont"), args.soundfont) if args.soundfont else None
    render_file(args.midi, args.audio, soundfont=soundfont)
    print(f"{args.audio}: written")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="midigen", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (add_prepare, add_train, add_generate, add_endless, add_evaluate, add_roundtrip, add_render,
                add_styles, add_corpus):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"prepare": run_prepare, "train": run_train, "generate": run_generate, "endless": run_endless,
                "evaluate": run_evaluate, "roundtrip": run_roundtrip, "render": run_render, "styles": run_styles,
                "corpus": run_corpus}
    try:
        handlers[args.command](args)
    except (ValueError, RuntimeError, OSError) as error:
        print(f"midigen {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0

