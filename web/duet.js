// The Duet tab: gr.HTML's js_on_load (answers come from midigen/duet.py, the sound from midigen/samples.py).
// What you play (on-screen keys, the computer keyboard laid out as in Ableton Live, a MIDI keyboard) sounds at once
// from samples of the page's soundfont, pitch-shifted in WebAudio; no server is asked per note. When you pause,
// the phrase goes to POST midigen/duet/answer (outside Gradio's queue) and the answer is scheduled on the audio
// clock. `window.midigenDuet` keeps the state, and for tests and benchmarks `answers`: the page's clock
// (performance.now()) at each pause's end and at its answer's first sound.
const layout = JSON.parse(element.querySelector(".duet").dataset.layout);
const CODES = ["KeyA", "KeyW", "KeyS", "KeyE", "KeyD", "KeyF", "KeyT", "KeyG", "KeyY", "KeyH", "KeyU", "KeyJ", "KeyK"];
const NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
const BLACK = new Set([1, 3, 6, 8, 10]);
const YOU = "#1f77b4", MIDIGEN = "#e8792e", SECONDS_SHOWN = 12, RELEASE = 0.08, LEAD = 0.02, LEVEL = 0.5;
const duet = window.midigenDuet = window.midigenDuet || {
  context: null, buffers: null, loaded: "", octave: 4, sounding: new Map(), you: [], midigen: [], phrase: [],
  origin: null, runs: [], answerId: 0, timer: null, lastRelease: 0, answers: [], midi: null, listening: false,
};
const part = selector => element.querySelector(selector);
const say = text => { part(".duet-status").textContent = text; };
const shown = () => element.getClientRects().length > 0;
const name = pitch => `${NAMES[pitch % 12]}${Math.floor(pitch / 12) - 1}`;
const pauseSeconds = () => Number(part(".duet-pause").value);
const settings = () => Object.assign({}, layout.settings, window.midigenDuetSettings || {});

function audio() {
  if (!duet.context) duet.context = new AudioContext({latencyHint: "interactive"});
  if (duet.context.state === "suspended") duet.context.resume();
  return duet.context;
}

// The samples of the chosen soundfont and instrument, one AudioBuffer per sampled pitch (see midigen/samples.py).
function loadSamples() {
  const chosen = settings(), program = chosen.program >= 0 ? chosen.program : 0;
  const address = `midigen/duet/samples/${encodeURIComponent(chosen.soundfont)}/${program}.flac`;
  if (duet.loaded === address) return;
  duet.loaded = address;
  const context = audio();
  fetch(address).then(response => response.ok ? response.arrayBuffer() : Promise.reject(response.statusText))
    .then(data => context.decodeAudioData(data))
    .then(all => {
      const frames = Math.round(layout.slot * all.sampleRate), samples = all.getChannelData(0);
      duet.buffers = layout.pitches.map((pitch, index) => {
        const buffer = context.createBuffer(1, frames, all.sampleRate);
        buffer.copyToChannel(samples.subarray(index * frames, (index + 1) * frames), 0);
        return buffer;
      });
    })
    .catch(() => { duet.loaded = ""; say("The keyboard's sound could not be loaded on this server."); });
}

// One note sounding from `when` (audio clock; 0: now). `role` tells tests whose note it is.
function voice(pitch, velocity, when, role) {
  if (!duet.buffers) return null;
  const context = audio(), last = layout.pitches.length - 1;
  const index = Math.max(0, Math.min(last, Math.round((pitch - layout.pitches[0]) / layout.step)));
  const source = context.createBufferSource(), gain = context.createGain();
  source.buffer = duet.buffers[index];
  source.playbackRate.value = Math.pow(2, (pitch - layout.pitches[index]) / 12);
  gain.gain.value = LEVEL * Math.pow(velocity / layout.velocity, 1.5);
  source.connect(gain).connect(context.destination);
  source.role = role;
  source.start(when);
  return {source, gain};
}

function release(sound, when) {
  sound.gain.gain.setTargetAtTime(0, when, RELEASE);
  try { sound.source.stop(when + 6 * RELEASE); } catch (error) { /* already stopped */ }
}

function noteOn(pitch, velocity) {
  const context = audio();
  if (!part(".duet-accompany").checked) stopAnswer();
  clearTimeout(duet.timer);
  if (duet.sounding.has(pitch)) noteOff(pitch);
  if (duet.origin === null) duet.origin = context.currentTime;
  const note = {pitch, velocity, start: context.currentTime - duet.origin, end: null};
  duet.you.push(note);
  duet.phrase.push(note);
  duet.sounding.set(pitch, {note, sound: voice(pitch, velocity, 0, "you")});
  const key = element.querySelector(`[data-pitch="${pitch}"]`);
  if (key) key.classList.add("down");
  draw();
}

function noteOff(pitch) {
  const held = duet.sounding.get(pitch);
  if (!held) return;
  duet.sounding.delete(pitch);
  const now = audio().currentTime;
  held.note.end = Math.max(now - duet.origin, held.note.start + 0.01);
  if (held.sound) release(held.sound, now);
  const key = element.querySelector(`[data-pitch="${pitch}"]`);
  if (key) key.classList.remove("down");
  if (!duet.sounding.size) {
    duet.lastRelease = performance.now();
    clearTimeout(duet.timer);
    duet.timer = setTimeout(ask, pauseSeconds() * 1000);
  }
}

// The answers stop at once: what has not started never sounds, what sounds is released.
function stopAnswer() {
  duet.answerId += 1;
  if (!duet.runs.length) return;
  const now = duet.context.currentTime, at = now - duet.origin;
  for (const run of duet.runs.splice(0)) {
    run.sounds.forEach(sound => release(sound, now));
    duet.midigen = duet.midigen.filter(note => !run.notes.includes(note) || note.start <= at);
    run.notes.forEach(note => { note.end = Math.min(note.end, Math.max(at, note.start + 0.01)); });
  }
}

const round = seconds => Math.round(seconds * 1000) / 1000;
const noteData = (note, from) => ({pitch: note.pitch, velocity: note.velocity, start: round(note.start - from),
                                   end: round(note.end - from)});

async function ask() {
  if (!duet.phrase.length || duet.sounding.size) return;
  const phrase = duet.phrase.splice(0), from = phrase[0].start, chosen = settings();
  const pauseEnd = duet.lastRelease + pauseSeconds() * 1000, id = ++duet.answerId;
  const request = {notes: phrase.map(note => noteData(note, from)), bars: Number(part(".duet-bars").value)};
  for (const key of ["key", "density", "temperature", "top_p", "bpm", "style", "soundfont"]) request[key] = chosen[key];
  if (chosen.program >= 0) request.program = chosen.program;  // the answer stays where this instrument sounds
  if (!chosen.randomize) request.random_seed = chosen.random_seed;
  say("midigen is answering…");
  let result, response;
  try {
    response = await fetch("midigen/duet/answer", {method: "POST", headers: {"Content-Type": "application/json"},
                                                   body: JSON.stringify(request)});
    result = await response.json();
  } catch (error) {
    say("The answer did not come; please play again.");
    return;
  }
  if (!response.ok) { say(result.error || "The answer did not come; please play again."); return; }
  if (id !== duet.answerId) return;  // played over while it came
  play(result.notes, pauseEnd);
}

function play(notes, pauseEnd) {
  const context = audio(), at = context.currentTime + LEAD;
  const run = {sounds: [], notes: []};
  duet.runs.push(run);
  for (const given of notes) {
    const note = {pitch: given.pitch, velocity: given.velocity, start: at - duet.origin + given.start,
                  end: at - duet.origin + given.end};
    duet.midigen.push(note);
    run.notes.push(note);
    const sound = voice(note.pitch, note.velocity, at + given.start, "midigen");
    if (sound) {
      release(sound, at + given.end);
      run.sounds.push(sound);
    }
  }
  if (notes.length) {
    duet.answers.push({pauseEnd, firstSound: performance.now() + (at + notes[0].start - context.currentTime) * 1000});
  }
  say(notes.length ? `midigen answers: ${notes.length} notes.` : "midigen has nothing to say; play again.");
  draw();
}

// The whole duet: your notes and the answers heard, seconds from the first note.
duet.record = () => {
  const now = duet.context ? duet.context.currentTime - (duet.origin || 0) : 0;
  const ended = note => Object.assign({}, note, {end: note.end === null ? Math.max(now, note.start + 0.01) : note.end});
  return {you: duet.you.map(note => noteData(ended(note), 0)),
          midigen: duet.midigen.filter(note => note.start <= now).map(note => noteData(note, 0))};
};

async function download() {
  const record = duet.record();
  if (!record.you.length && !record.midigen.length) { say("Play something first."); return; }
  const response = await fetch("midigen/duet/midi", {method: "POST", headers: {"Content-Type": "application/json"},
                                                     body: JSON.stringify(record)});
  if (!response.ok) { say((await response.json()).error); return; }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = "midigen-duet.mid";
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

function clear() {
  stopAnswer();
  [...duet.sounding.keys()].forEach(noteOff);
  clearTimeout(duet.timer);
  Object.assign(duet, {you: [], midigen: [], phrase: [], origin: null});
  say("Play a phrase and pause: midigen answers.");
  draw();
}

// -- the keyboard on screen: two octaves and a C from the octave chosen ------------------------------------------
function buildKeys() {
  const keys = part(".duet-keys"), low = 12 * (duet.octave + 1), whites = [];
  keys.replaceChildren();
  for (let pitch = low; pitch <= low + 24; pitch++) {
    const key = document.createElement("button");
    key.type = "button";
    key.dataset.pitch = pitch;
    key.className = BLACK.has(pitch % 12) ? "black" : "white";
    key.setAttribute("aria-label", name(pitch));
    if (!BLACK.has(pitch % 12)) { key.textContent = pitch % 12 === 0 ? name(pitch) : ""; whites.push(key); }
    keys.appendChild(key);
  }
  const width = 100 / whites.length;
  keys.querySelectorAll(".black").forEach(key => {
    const before = whites.findIndex(white => Number(white.dataset.pitch) > Number(key.dataset.pitch));
    key.style.left = `${(before - 0.3) * width}%`;
    key.style.width = `${0.6 * width}%`;
  });
  part(".duet-octave").textContent = `${name(low)}–${name(low + 24)}`;
}

function shiftOctave(by) {
  duet.octave = Math.max(0, Math.min(7, duet.octave + by));
  buildKeys();
}

const keyOf = event => event.target.closest && event.target.closest(".duet-keys button");
element.addEventListener("pointerdown", event => {
  const key = keyOf(event);
  if (!key) return;
  key.setPointerCapture(event.pointerId);
  noteOn(Number(key.dataset.pitch), Math.round(40 + 80 * Math.min(1, event.pressure || 0.6)));
});
for (const type of ["pointerup", "pointercancel"]) {
  element.addEventListener(type, event => { const key = keyOf(event); if (key) noteOff(Number(key.dataset.pitch)); });
}
element.addEventListener("click", event => {
  const key = keyOf(event);
  if (key && event.detail === 0) {  // Enter or Space on a focused key
    noteOn(Number(key.dataset.pitch), 90);
    setTimeout(() => noteOff(Number(key.dataset.pitch)), 300);
  }
  if (event.target.closest(".duet-octave-down")) shiftOctave(-1);
  if (event.target.closest(".duet-octave-up")) shiftOctave(1);
  if (event.target.closest(".duet-download")) download();
  if (event.target.closest(".duet-clear")) clear();
});
part(".duet-pause").addEventListener("input", () => {
  part(".duet-pause-value").textContent = `${pauseSeconds().toFixed(1)} s`;
});
const bars = part(".duet-bars");
for (let count = 1; count <= layout.max_bars; count++) bars.add(new Option(`${count} bar${count > 1 ? "s" : ""}`, count));
bars.value = layout.bars;

// -- the computer keyboard and MIDI keyboards ---------------------------------------------------------------------
function typing(target) {
  const tag = target && target.tagName;
  return tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable)
    || (tag === "INPUT" && !["range", "checkbox", "radio", "button"].includes(target.type));
}
duet.keydown = event => {
  if (!shown() || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
  const index = CODES.indexOf(event.code);
  if (index >= 0 || event.code === "KeyZ" || event.code === "KeyX") event.preventDefault();
  if (event.repeat) return;
  if (index >= 0) noteOn(12 * (duet.octave + 1) + index, 96);
  else if (event.code === "KeyZ") shiftOctave(-1);
  else if (event.code === "KeyX") shiftOctave(1);
};
duet.keyup = event => {
  const index = CODES.indexOf(event.code);
  if (index >= 0) noteOff(12 * (duet.octave + 1) + index);
};
duet.midiMessage = message => {
  const [status, pitch, velocity] = message.data, kind = status & 0xf0;
  if (kind === 0x90 && velocity > 0) noteOn(pitch, velocity);
  else if (kind === 0x80 || kind === 0x90) noteOff(pitch);
};
if (!duet.listening) {
  duet.listening = true;
  document.addEventListener("keydown", event => duet.keydown(event));
  document.addEventListener("keyup", event => duet.keyup(event));
  window.addEventListener("midigen-duet-settings", () => duet.settingsChanged());
}
duet.settingsChanged = () => { if (duet.context) loadSamples(); };

function connectMidi() {
  if (duet.midi || !navigator.requestMIDIAccess) return;
  duet.midi = navigator.requestMIDIAccess().then(access => {
    const listen = () => access.inputs.forEach(input => { input.onmidimessage = message => duet.midiMessage(message); });
    listen();
    access.onstatechange = listen;
    if (access.inputs.size) say(`MIDI keyboard connected (${access.inputs.size}). Play a phrase and pause.`);
  }).catch(() => {});
}

// -- the piano roll: the last seconds, you in blue, midigen in orange ---------------------------------------------
function draw() {
  if (duet.drawing) return;
  duet.drawing = true;
  requestAnimationFrame(() => { duet.drawing = false; paint(); });
}

function paint() {
  const canvas = part(".duet-roll");
  if (!canvas || !shown()) return;
  const box = canvas.getBoundingClientRect(), scale = window.devicePixelRatio || 1;
  const width = Math.round(box.width * scale), height = Math.round(box.height * scale);
  if (canvas.width !== width || canvas.height !== height) Object.assign(canvas, {width, height});
  const pen = canvas.getContext("2d"), now = duet.context && duet.origin !== null ? duet.context.currentTime - duet.origin : 0;
  const notes = [...duet.you.map(n => [n, YOU]), ...duet.midigen.map(n => [n, MIDIGEN])];
  const pitches = notes.map(([note]) => note.pitch), low = Math.min(48, ...pitches) - 1, high = Math.max(84, ...pitches) + 1;
  const left = now - SECONDS_SHOWN * 0.75, x = t => (t - left) / SECONDS_SHOWN * canvas.width;
  const row = canvas.height / (high - low + 1);
  pen.clearRect(0, 0, canvas.width, canvas.height);
  for (const [note, colour] of notes) {
    const end = note.end === null ? now : note.end;
    if (end < left) continue;
    pen.fillStyle = colour;
    pen.fillRect(x(note.start), (high - note.pitch) * row, Math.max(2, x(end) - x(note.start)), Math.max(2, row - 1));
  }
  pen.fillStyle = "#d62728";
  pen.fillRect(x(now), 0, Math.max(1, scale), canvas.height);
  const busy = duet.sounding.size || duet.midigen.some(note => note.end > now);
  if (busy) draw();
}

buildKeys();
new IntersectionObserver(entries => {
  if (!entries.some(entry => entry.isIntersecting)) return;
  loadSamples();
  connectMidi();
  draw();
}).observe(element);
