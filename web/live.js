// The live player: gr.HTML's js_on_load (the stream comes from midigen/live.py). `props.value` is
// {url, kind: "piece" | "endless", id} to play a stream, or null to stop. A stream is a run of frames:
// a 4-byte big-endian length, a JSON header, then MP3 bytes. The MP3 goes into a MediaSource played by
// an <audio> element of its own, kept outside the component (so a re-rendered template cannot cut the
// sound); the notes of endless music go to the live roll.
const SECONDS_SHOWN = 12, PLAYHEAD_AT = 0.25, KEEP_BEHIND = 30, ROLL_HEIGHT = 96;
const NEW = "#e8792e", PLAYHEAD = "#d62728";

// `firstSound` keeps the page's clock (performance.now()) at each stream's first sound, for tests and benchmarks.
const live = window.midigenLive = window.midigenLive || {run: null, endlessAt: 0, firstSound: [], audio: null};
if (!live.listening) {
  live.listening = true;
  // Any other player starting (web/piano_roll.js tells) pauses the live one.
  window.addEventListener("midigen-play", event => { if (live.audio && event.detail !== live.audio) live.audio.pause(); });
}
const part = selector => element.querySelector(selector);
const say = text => { const status = part(".live-status"); if (status) status.textContent = text; };
const clock = t => `${Math.floor(t / 60)}:${String(Math.floor(t % 60)).padStart(2, "0")}`;

function show(kind) {
  element.dataset.kind = kind || "";
  const rollBox = part(".live-roll-box");
  if (rollBox) rollBox.hidden = kind !== "endless";
  const pause = part(".live-pause");
  if (pause) pause.hidden = !kind;
}

// Stop the stream; the seconds of endless music played so far.
function halt() {
  const run = live.run;
  if (run) {
    live.run = null;
    run.controller.abort();
    if (run.kind === "endless") live.endlessAt = run.audio.currentTime;
    run.audio.pause();
    setTimeout(() => {  // let go of its media only after the next stream has started
      run.audio.removeAttribute("src");
      run.audio.load();
      URL.revokeObjectURL(run.objectUrl);
    }, 2000);
  }
  element.dataset.state = "stopped";
  show(null);
  const time = part(".live-clock");
  if (time) time.textContent = "";
  return live.endlessAt;
}
live.stop = halt;

function join(a, b) {
  const both = new Uint8Array(a.length + b.length);
  both.set(a);
  both.set(b, a.length);
  return both;
}

// The first whole frame of `bytes`: {header, audio, size}, or null.
function nextFrame(bytes) {
  if (bytes.length < 4) return null;
  const length = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0);
  if (bytes.length < 4 + length) return null;
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + length)));
  const size = 4 + length + header.bytes;
  if (bytes.length < size) return null;
  return {header, audio: bytes.slice(4 + length, size), size};
}

async function play(value) {
  halt();
  if (!value || !value.url) return;
  const run = live.run = {controller: new AbortController(), kind: value.kind, queue: [], notes: [], done: false,
                          low: 60, high: 72, asked: performance.now()};
  if (value.kind === "endless") live.endlessAt = 0;
  const audio = run.audio = live.audio = listened(new Audio());
  const source = new MediaSource();
  run.objectUrl = URL.createObjectURL(source);
  audio.src = run.objectUrl;
  element.dataset.state = "loading";
  show(value.kind);
  say(value.kind === "endless" ? "Endless: starting…" : "Take 1 is playing while the rest is prepared…");
  const responding = fetch(new URL(value.url, document.baseURI), {signal: run.controller.signal, cache: "no-store"});
  responding.catch(() => {});  // handled below
  await new Promise(resolve => source.addEventListener("sourceopen", resolve, {once: true}));
  if (live.run !== run) return;
  const buffer = source.addSourceBuffer("audio/mpeg");
  buffer.mode = "sequence";
  const pump = () => {
    if (live.run !== run || buffer.updating || source.readyState !== "open") return;
    if (run.queue.length) { buffer.appendBuffer(run.queue.shift()); return; }
    const behind = audio.currentTime - KEEP_BEHIND;  // an hour of audio must not pile up in the page
    if (buffer.buffered.length && buffer.buffered.start(0) < behind - 10) { buffer.remove(0, behind); return; }
    if (run.done) source.endOfStream();
  };
  buffer.addEventListener("updateend", pump);
  try {
    const response = await responding;
    if (!response.ok) throw new Error(await response.text());
    const reader = response.body.getReader();
    let pending = new Uint8Array(0);
    for (;;) {
      const {done, value: bytes} = await reader.read();
      if (done || live.run !== run) break;
      pending = join(pending, bytes);
      let frame;
      while ((frame = nextFrame(pending))) {
        pending = pending.slice(frame.size);
        run.queue.push(frame.audio);
        for (const note of frame.header.notes) {
          run.notes.push(note);
          run.low = Math.min(run.low, note[0] - 2);
          run.high = Math.max(run.high, note[0] + 2);
        }
        if (frame.header.message) say(frame.header.message);
        run.done = run.done || frame.header.last;
        pump();
        if (!run.started) {
          run.started = true;
          audio.play().catch(() => say("Press Play on a player to listen (the browser blocked sound)."));
        }
      }
    }
    run.done = true;
    pump();
  } catch (error) {
    if (live.run === run && error.name !== "AbortError") say(`The live stream stopped: ${error.message}`);
  }
}

function drawRoll() {
  const run = live.run;
  const canvas = part(".live-roll");
  if (!run || run.kind !== "endless" || !canvas) return;
  const ratio = window.devicePixelRatio || 1, w = canvas.clientWidth || 300, h = ROLL_HEIGHT;
  if (canvas.width !== Math.round(w * ratio)) { canvas.width = Math.round(w * ratio); canvas.height = h * ratio; }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  const now = run.audio.currentTime, perSecond = w / SECONDS_SHOWN, head = w * PLAYHEAD_AT;
  const rows = run.high - run.low + 1, row = h / rows;
  run.notes = run.notes.filter(n => n[2] > now - SECONDS_SHOWN);
  g.fillStyle = NEW;
  for (const [pitch, start, end] of run.notes) {
    const x = head + (start - now) * perSecond;
    if (x > w) continue;
    g.fillRect(x, (run.high - pitch) * row, Math.max(2, (end - start) * perSecond - 1), Math.max(2, row - 1));
  }
  g.fillStyle = PLAYHEAD;
  g.fillRect(head, 0, 2, h);
  const box = part(".live-roll-box");
  if (box && run.notes.length) {
    const heard = run.notes.filter(n => n[1] <= now);
    box.setAttribute("aria-label", `Live piano roll: ${clock(now)} played; notes from MIDI ${run.low + 2} to ${run.high - 2}`
                     + (heard.length ? `, the last at pitch ${heard[heard.length - 1][0]}` : ""));
  }
}

// `audio` with the listeners every live player has; it plays the current run, if it is that run's.
function listened(audio) {
  const mine = () => live.run && live.run.audio === audio ? live.run : null;
  audio.preload = "auto";
  audio.addEventListener("playing", () => {
    const run = mine();
    if (!run) return;
    if (!run.heard) {
      run.heard = true;
      live.firstSound.push(performance.now());
      say(run.kind === "endless" ? "Endless: playing. Key, Density, Temperature and Repetition steer it as it plays."
                                 : "Take 1 plays as it is rendered.");
    }
    element.dataset.state = "playing";
    window.dispatchEvent(new CustomEvent("midigen-play", {detail: audio}));
    const tick = () => { if (!audio.paused && mine()) { drawRoll(); requestAnimationFrame(tick); } };
    requestAnimationFrame(tick);
  });
  audio.addEventListener("timeupdate", () => {
    const run = mine();
    if (!run) return;
    const time = part(".live-clock");
    if (time) time.textContent = clock(audio.currentTime);
    if (run.kind === "endless") { live.endlessAt = audio.currentTime; return; }
    const roll = window.midigenRoll;  // the first take's lane of the piano roll follows the stream
    if (roll && roll.attach && !audio.paused && roll.laneMedia[0] !== audio) roll.attach(0, audio);
  });
  audio.addEventListener("pause", () => {
    const pause = part(".live-pause");
    if (pause && mine()) pause.textContent = "Play";
  });
  audio.addEventListener("play", () => {
    const pause = part(".live-pause");
    if (pause && mine()) pause.textContent = "Pause";
  });
  audio.addEventListener("ended", () => {
    const run = mine();
    if (!run) return;
    element.dataset.state = "ended";
    if (run.kind === "piece") say("Take 1 has played; its player below holds the whole piece.");
  });
  return audio;
}

element.addEventListener("click", event => {
  if (!event.target.closest(".live-pause") || !live.run) return;
  if (live.run.audio.paused) live.run.audio.play(); else live.run.audio.pause();
});

play(props.value);
watch("value", () => play(props.value));
