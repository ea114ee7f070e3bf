"""A token cache for training on large MIDI collections.

``prepare(folder, cache)`` tokenizes every .mid/.midi file under ``folder`` on all usable cores, through the
same bounded loader the app uses for uploads (``midi_io.load_midi``), into a folder holding

- ``tokens-N.bin``: the token streams of all pieces, one after the other (int64, read as a memory map);
- ``index.json``: per file its name, size, modification time, SHA-256, note count and how loud its notes play at
  each velocity level, where its tokens lie, the files skipped (and why) or found to duplicate another, and the
  tokenizer config and version with their hash.

Files are recognised by name, size and modification time, then by content: a re-run tokenizes only new or
changed files, and files with the same content are stored (and trained on) once. ``TokenCache`` reads it back.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .device import usable_cores
from .midi_io import MidiError, MidiLimits, load_midi
from .tokenizer import TOKENIZER_VERSION, Score, Tokenizer, TokenizerConfig

FORMAT = "midigen-token-cache-1"
INDEX = "index.json"
TOKEN_DTYPE = np.dtype("<i8")  # what training indexes with: the pieces are zero-copy views of the map
# Training reads files the user chose, so the bounds are generous; they still stop hostile files.
UNREADABLE = "This file could not be read."
TRAINING_LIMITS = MidiLimits(max_bytes=64 << 20, max_events=10**7, max_notes=10**7, max_seconds=4 * 3600.0)


@dataclass
class Entry:
    """One file of the collection as the index records it."""

    name: str  # relative to the collection's folder, with '/'
    size: int
    mtime_ns: int
    sha256: str
    notes: int = 0
    offset: int = 0  # in tokens, into the token file
    length: int = 0
    skipped: str = ""  # why the file is not used (empty: it is)
    same_as: str = ""  # the stored file with the same content
    loudness: list[list[int]] = field(default_factory=list)  # per velocity level: [sum of velocities, notes]


@dataclass
class Report:
    """What one ``prepare`` run did."""

    files: int = 0
    tokenized: int = 0
    unchanged: int = 0
    duplicates: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> files
    pieces: int = 0
    tokens: int = 0

    def __str__(self) -> str:
        lines = [f"{self.files:,} files: {self.tokenized:,} tokenized, {self.unchanged:,} unchanged, "
                 f"{_count(self.duplicates, 'duplicate')} (stored once), {sum(self.skipped.values()):,} skipped"]
        lines += [f"  skipped {count:,}: {reason}" for reason, count in self.skipped.most_common()]
        lines.append(f"cache: {self.pieces:,} pieces, {self.tokens:,} tokens")
        return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def midi_files(folder: str | Path) -> list[Path]:
    """All .mid/.midi files under ``folder``, sorted."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi") and p.is_file())
    if not files:
        raise ValueError(f"no .mid or .midi files found in {folder}")
    return files


def tokenizer_hash(config: TokenizerConfig) -> str:
    """What the tokens depend on: the tokenizer config and the tokenizer's version (``TOKENIZER_VERSION``)."""
    described = {"config": config.to_dict(), "version": TOKENIZER_VERSION}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def is_cache(path: str | Path) -> bool:
    return (Path(path) / INDEX).is_file()


class TokenCache:
    """A prepared collection: its index, and its tokens as a copy-on-write memory map (the file never changes)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        try:
            index = json.loads((self.folder / INDEX).read_text())
            if index.get("format") != FORMAT:
                raise ValueError(f"unknown format {index.get('format')!r}")
            self.tokenizer_config = TokenizerConfig.from_dict(index["tokenizer"])
            self.tokenizer_sha256 = index["tokenizer_sha256"]
            self.source = index["source"]
            self.entries = [Entry(**e) for e in index["files"]]
            self.generation = int(index["generation"])
            self.token_file = self.folder / index["tokens"]
            self.tokens = (np.memmap(self.token_file, dtype=TOKEN_DTYPE, mode="c") if self.token_file.stat().st_size
                           else np.zeros(0, dtype=TOKEN_DTYPE))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{self.folder} is not a readable token cache ({error}); run prepare again") from None

    def pieces(self) -> list[tuple[str, np.ndarray, int, list[list[int]]]]:
        """(name, tokens, notes, loudness) of every stored piece, sorted by name; the tokens are views of the map."""
        return [(e.name, self.tokens[e.offset : e.offset + e.length], e.notes, e.loudness) for e in self.entries
                if not e.skipped and not e.same_as]

    def check_tokenizer(self, config: TokenizerConfig) -> None:
        """Refuse a cache whose tokens another tokenizer config or version wrote."""
        if config != self.tokenizer_config:
            raise ValueError(f"the token cache {self.folder} was prepared with another tokenizer config; "
                             f"run prepare again from {self.source}")
        if tokenizer_hash(config) != self.tokenizer_sha256:
            raise ValueError(f"the token cache {self.folder} was prepared by another version of the tokenizer; "
                             f"run prepare again from {self.source}")


def training_cache(data: str | Path, out: str | Path, config: TokenizerConfig, update: bool) -> TokenCache:
    """The cache to train on: ``data`` when it is a token cache, else the MIDI folder ``data`` prepared into
    ``OUT.tokens`` next to the checkpoint ``out`` (brought up to date first when ``update``)."""
    if is_cache(data):
        cache = TokenCache(data)
    else:
        folder = Path(out).with_name(Path(out).name + ".tokens")
        if update:
            tqdm.write(str(prepare(data, folder, config)))
        cache = TokenCache(folder)
    cache.check_tokenizer(config)
    return cache


def prepare(
    folder: str | Path,
    cache: str | Path,
    config: TokenizerConfig | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Report:
    """Tokenize the MIDI files under ``folder`` into the token cache ``cache`` (created or brought up to date)."""
    folder, cache = Path(folder), Path(cache)
    config = config or TokenizerConfig()
    files = midi_files(folder)
    previous = _old_cache(cache)
    # tokens are reused only from a cache written by the same tokenizer config and version
    old = previous if previous and previous.tokenizer_sha256 == tokenizer_hash(config) else None
    known = {e.name: e for e in old.entries} if old else {}
    # a piece stored before its loudness was recorded is tokenized again, to record it
    kept = {e.sha256: e for e in (old.entries if old else []) if not e.same_as and (e.loudness or e.skipped)}
    entries, to_tokenize = [], {}
    for path in files:
        name, stat = path.relative_to(folder).as_posix(), path.stat()
        before = known.get(name)
        if before and before.sha256 and (before.size, before.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            digest = before.sha256
        else:
            try:
                with open(path, "rb") as file:
                    digest = hashlib.file_digest(file, "sha256").hexdigest()
            except OSError:  # tried again on the next run
                entries.append(Entry(name, stat.st_size, stat.st_mtime_ns, "", skipped=UNREADABLE))
                continue
        entries.append(Entry(name, stat.st_size, stat.st_mtime_ns, digest))
        if digest not in kept:
            to_tokenize.setdefault(digest, path)
    if old and not to_tokenize and [_identity(e) for e in entries] == [_identity(e) for e in old.entries]:
        return _report(old.entries, tokenized=0)
    cache.mkdir(parents=True, exist_ok=True)
    generation = previous.generation + 1 if previous else 1  # never the name of a file being read
    token_name = f"tokens-{generation}.bin"
    placed: dict[str, Entry] = {}  # content -> where its tokens are and what the file gave
    with open(cache / token_name, "wb") as sink:
        for entry in entries:
            source = kept.get(entry.sha256)
            if source and entry.sha256 not in placed:
                placed[entry.sha256] = _append(sink, old.tokens[source.offset : source.offset + source.length],
                                               source.notes, source.skipped, source.loudness)
        for digest, tokens, notes, reason, loudness in _tokenized(list(to_tokenize.items()), config, workers,
                                                                  progress):
            placed[digest] = _append(sink, tokens, notes, reason, loudness)
    first: dict[str, str] = {}
    for entry in (e for e in entries if e.sha256):
        where = placed[entry.sha256]
        entry.offset, entry.length, entry.notes, entry.skipped = where.offset, where.length, where.notes, where.skipped
        entry.loudness = where.loudness
        if entry.sha256 in first:
            entry.same_as = first[entry.sha256]
        else:
            first[entry.sha256] = entry.name
    index = {"format": FORMAT, "source": str(folder.resolve()), "tokenizer": config.to_dict(),
             "tokenizer_version": TOKENIZER_VERSION, "tokenizer_sha256": tokenizer_hash(config),
             "generation": generation, "tokens": token_name,
             "files": [asdict(e) for e in entries]}
    temporary = cache / (INDEX + ".tmp")
    temporary.write_text(json.dumps(index, indent=0) + "\n")
    temporary.replace(cache / INDEX)  # the index names its token file, so the pair changes at once
    if previous and previous.token_file.name != token_name:
        previous.token_file.unlink(missing_ok=True)  # a trainer that has it mapped keeps reading it
    return _report(entries, tokenized=len(to_tokenize))


def _identity(entry: Entry) -> tuple:
    return entry.name, entry.size, entry.mtime_ns, entry.sha256


def _append(sink, tokens: np.ndarray, notes: int, reason: str, loudness: list[list[int]]) -> Entry:
    """Write ``tokens`` at the end of the token file; return where they are (in an Entry without a name)."""
    offset = sink.tell() // TOKEN_DTYPE.itemsize
    if not reason:
        sink.write(np.ascontiguousarray(tokens, dtype=TOKEN_DTYPE).tobytes())
    return Entry("", 0, 0, "", notes=notes, offset=offset, length=0 if reason else len(tokens), skipped=reason,
                 loudness=loudness)


def _report(entries: list[Entry], tokenized: int) -> Report:
    stored = [e for e in entries if not e.same_as]
    return Report(
        files=len(entries),
        tokenized=tokenized,
        unchanged=len(stored) - tokenized,
        duplicates=len(entries) - len(stored),
        skipped=Counter(e.skipped for e in stored if e.skipped),
        pieces=sum(1 for e in stored if not e.skipped),
        tokens=sum(e.length for e in stored),
    )


def _old_cache(cache: Path) -> TokenCache | None:
    """The readable cache already at ``cache``, if any. Its tokens are reused only when the same tokenizer
    config and version wrote them."""
    if not is_cache(cache):
        return None
    try:
        return TokenCache(cache)
    except ValueError:
        return None


def _tokenized(items: list[tuple[str, Path]], config: TokenizerConfig, workers: int | None, progress: bool):
    """(sha256, tokens, notes, reason skipped, loudness) of each (sha256, path), tokenized on ``workers``
    processes."""
    workers = max(1, min(workers or usable_cores(), len(items)))
    bar = tqdm(total=len(items), desc="tokenizing", unit="file", disable=not progress or not items)
    if workers == 1:
        _start_worker(config)
        results = map(_tokenize, items)
    else:
        pool = ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(config,))
        results = pool.map(_tokenize, items, chunksize=max(1, min(16, len(items) // (8 * workers))))
    try:
        for result in results:
            bar.update()
            yield result
    finally:
        bar.close()
        if workers > 1:
            pool.shutdown(cancel_futures=True)


_tokenizer: Tokenizer | None = None


def _start_worker(config: TokenizerConfig) -> None:
    global _tokenizer
    _tokenizer = Tokenizer(config)


def _tokenize(item: tuple[str, Path]) -> tuple[str, np.ndarray, int, str, list[list[int]]]:
    """Load one file through the bounded loader and tokenize it; a file that cannot be used gives its reason."""
    digest, path = item
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = _tokenizer.midi_to_score(load_midi(path, TRAINING_LIMITS))
    except MidiError as error:
        return digest, np.zeros(0, TOKEN_DTYPE), 0, str(error), []
    tokens = np.asarray(_tokenizer.score_to_tokens(score), dtype=TOKEN_DTYPE)
    notes = _tokenizer.count_notes(tokens.tolist())
    return digest, tokens, notes, "" if notes else "The tokenizer found no notes in this file.", _loudness(score)


def _loudness(score: Score) -> list[list[int]]:
    """[sum of velocities, notes] of ``score``'s notes at each velocity level."""
    found = [[0, 0] for _ in range(_tokenizer.config.velocity_levels)]
    for note in score.notes:
        level = found[_tokenizer.velocity_level(note.velocity)]
        level[0] += note.velocity
        level[1] += 1
    return found
