// The piano roll that plays along: gr.HTML's js_on_load. `element` is the component, `props.value` the
// roll data (midigen/pianoroll.py), `watch` re-runs a callback when the value changes.
// Gradio's players (WaveSurfer) play through <audio> elements they create outside the page's DOM, so
// every media element made is recorded; a player's "play" event (see app.py) then tells which lane
// that element belongs to.
const PX_PER_SECOND = 48;
const LANE_HEIGHT = 132;
const SEED = "#607da0", NEW = "#e8792e", BOUNDARY = "#8a8a8a", PLAYHEAD = "#d62728", OCTAVE = "#e2e2dc";

const state = window.midigenRoll = window.midigenRoll || {media: [], lastPlayed: null, laneMedia: {}, pendingSeek: null};
if (!state.hooked) {
  state.hooked = true;
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function (tag, ...rest) {
    const made = create.call(this, tag, ...rest);
    if (made instanceof HTMLMediaElement) {
      state.media.push(made);
      made.addEventListener("play", () => {
        state.lastPlayed = made;
        window.dispatchEvent(new CustomEvent("midigen-play", {detail: made}));  // the live player pauses
      });
    }
    return made;
  };
}

let box = element.querySelector(".roll-scroll");
let lanesBox = element.querySelector(".roll-lanes");

function width(roll) {
  return Math.max(box.clientWidth || 300, Math.ceil((roll.end + 1) * PX_PER_SECOND));
}

function drawLane(canvas, lane, roll) {
  const ratio = window.devicePixelRatio || 1;
  const w = width(roll), h = LANE_HEIGHT;
  canvas.width = w * ratio; canvas.height = h * ratio;
  canvas.style.width = w + "px"; canvas.style.height = h + "px";
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  const rows = roll.high - roll.low + 1, row = h / rows;
  g.fillStyle = OCTAVE;
  for (let p = roll.low; p <= roll.high; p++) if (p % 12 === 0) g.fillRect(0, (roll.high - p) * row + row - 1, w, 1);
  for (const [pitch, start, end, isNew] of lane.notes) {
    g.fillStyle = isNew ? NEW : SEED;
    g.fillRect(start * PX_PER_SECOND, (roll.high - pitch) * row, Math.max(2, (end - start) * PX_PER_SECOND - 1),
               Math.max(2, row - 1));
  }
  if (lane.boundary > 0 && lane.notes.some(n => !n[3])) {
    g.fillStyle = BOUNDARY;
    g.fillRect(Math.round(lane.boundary * PX_PER_SECOND), 0, 2, h);
  }
}

const NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];
const noteName = pitch => NAMES[pitch % 12] + (Math.floor(pitch / 12) - 1);
const clock = t => `${Math.floor(t / 60)}:${String(Math.round(t % 60)).padStart(2, "0")}`;

// The roll in words, for screen readers: each lane's notes, range, length and where the new music starts.
function describe(roll) {
  if (!roll || !roll.lanes || !roll.lanes.length) return "Piano roll: no music yet.";
  const lanes = roll.lanes.map((lane, index) => {
    if (!lane.notes.length) return `variation ${index + 1}: no notes`;
    const pitches = lane.notes.map(n => n[0]);
    const fresh = lane.notes.filter(n => n[3]).length;
    return `variation ${index + 1}: ${lane.notes.length} notes (${fresh} new) from ${noteName(Math.min(...pitches))} `
      + `to ${noteName(Math.max(...pitches))}, ${clock(lane.end)} long`
      + (fresh < lane.notes.length ? `, the new music from ${clock(lane.boundary)}` : "");
  });
  return `Piano roll, ${lanes.join("; ")}. Arrow keys scroll it.`;
}

function draw() {
  const roll = props.value;
  state.start = roll && roll.start ? roll.start : 0;  // seconds into the MIDI file where the audio starts
  box = element.querySelector(".roll-scroll");  // the template may have been rendered again
  lanesBox = element.querySelector(".roll-lanes");
  box.setAttribute("aria-label", describe(roll));
  lanesBox.innerHTML = "";
  if (!roll || !roll.lanes || !roll.lanes.length) { element.dataset.lanes = "0"; return; }
  roll.lanes.forEach((lane, index) => {
    const wrap = document.createElement("div");
    wrap.className = "roll-lane";
    wrap.dataset.lane = String(index);
    const notes = document.createElement("canvas");
    const head = document.createElement("div");
    head.className = "roll-playhead";
    head.style.left = "0px";
    drawLane(notes, lane, roll);
    wrap.append(notes, head);
    wrap.addEventListener("click", event => seek(index, (event.offsetX + (event.target === head ? head.offsetLeft : 0))
                                                   / PX_PER_SECOND));
    lanesBox.append(wrap);
  });
  state.laneMedia = {};
  element.dataset.lanes = String(roll.lanes.length);
  element.dataset.time = "0";
}

function playerButton(index, label) {
  const player = document.getElementById(`player-${index + 1}`);
  return player && player.querySelector(`button[aria-label="${label}"]`);
}

function seek(index, seconds) {
  const media = state.laneMedia[index];
  const live = window.midigenLive && window.midigenLive.audio;
  if (media && media !== live) { media.currentTime = seconds; follow(); return; }
  if (media) { live.pause(); delete state.laneMedia[index]; }  // the take's own player takes over from the stream
  state.pendingSeek = {index, seconds};  // applied once that player starts
  const play = playerButton(index, "Play");
  if (play) play.click();
}

// Seconds into the MIDI file where lane `index` is playing or paused (0 if it never played).
state.position = index => {
  const media = state.laneMedia[index];
  return media ? state.start + media.currentTime : 0;
};

// Called by each player's "play" event (app.py): the element that just started belongs to lane `index`.
state.playing = index => {
  if (!state.lastPlayed) return;
  state.laneMedia[index] = state.lastPlayed;
  if (state.pendingSeek && state.pendingSeek.index === index) {
    state.lastPlayed.currentTime = state.pendingSeek.seconds;
    state.pendingSeek = null;
  }
  follow();
};

// The live player (web/live.js) plays lane `index` while the take's own player is not yet used.
state.attach = (index, media) => {
  state.laneMedia[index] = media;
  follow();
};

function follow() {
  let playing = false;
  lanesBox.querySelectorAll(".roll-lane").forEach(wrap => {
    const media = state.laneMedia[Number(wrap.dataset.lane)];
    if (!media) return;
    const x = media.currentTime * PX_PER_SECOND;
    wrap.querySelector(".roll-playhead").style.left = `${x}px`;
    if (!media.paused) {
      playing = true;
      element.dataset.time = media.currentTime.toFixed(2);
      if (x < box.scrollLeft + 24 || x > box.scrollLeft + box.clientWidth - 48) box.scrollLeft = Math.max(0, x - 48);
    }
  });
  if (playing) requestAnimationFrame(follow);
}

draw();
watch("value", draw);
