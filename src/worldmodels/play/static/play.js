// worldmodels play: the page. It asks the server (server.py) for a session, posts the keys held once a
// frame, and draws the 64x64 frame each answer carries. window.play exposes the state to tests.
"use strict";

const $ = (id) => document.getElementById(id);
const play = {
  id: null, info: null, held: new Set(), paused: false, busy: false, last: null,
  frames: {}, // t -> frame (base64) of the current episode: lets a test compare two episodes
  fps: 0, episodes: 0, resetting: false,
};
window.play = play;

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const r = await fetch(path, init);
  const j = await r.json();
  if (!r.ok) throw new Error(j.error || r.statusText);
  return j;
}

function say(text, ok) {
  $("status").textContent = text;
  $("status").className = ok ? "info" : "";
}

function draw(canvas, b64) {
  const bin = atob(b64);
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(64, 64);
  for (let i = 0, j = 0; i < bin.length; i += 3, j += 4) {
    img.data[j] = bin.charCodeAt(i);
    img.data[j + 1] = bin.charCodeAt(i + 1);
    img.data[j + 2] = bin.charCodeAt(i + 2);
    img.data[j + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function drawBars(z) {
  const c = $("zbars"), ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  const w = c.width / z.length, mid = c.height / 2;
  ctx.fillStyle = "#ccc";
  ctx.fillRect(0, mid, c.width, 1);
  z.forEach((v, i) => {
    const h = Math.max(-1, Math.min(1, v / 3)) * mid;
    ctx.fillStyle = v >= 0 ? "#1565c0" : "#c62828";
    ctx.fillRect(i * w + 1, h >= 0 ? mid - h : mid, Math.max(1, w - 2), Math.abs(h));
  });
}

const choice = (name) => document.querySelector(`input[name=${name}]:checked`).value;
const tau = () => parseFloat($("tau").value);

function show(a) {
  play.last = a;
  if (!play.resetting || a.t === 0) play.frames[a.t] = a.frame; // not the old episode's last step
  draw($("frame"), a.frame);
  $("recon-box").hidden = !a.recon;
  if (a.recon) draw($("recon"), a.recon);
  drawBars(a.z);
  $("t").textContent = a.t;
  $("action").textContent = a.action || "-";
  $("total").textContent = a.total.toFixed(1);
  $("pdone").textContent = a.p_done === null ? "-" : a.p_done.toFixed(2);
  $("frame-caption").textContent = a.where === "dream"
    ? `the dream: M's z decoded by V (tau ${a.temperature.toFixed(2)})` : "the real env (what V sees)";
  if (a.done) say(`episode over after ${a.t} frames: ended by ${a.ended_by}; score ${a.total.toFixed(1)}`);
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

async function restart() {
  play.resetting = true;
  play.episodes += 1;
  play.frames = {};
  while (play.busy) await sleep(5); // the step in flight lands first: the new episode starts clean
  try {
    const a = await api("/api/reset", {
      id: play.id, where: choice("where"), driver: choice("driver"), temperature: tau(),
      seed: parseInt($("seed").value, 10) || 0,
    });
    say(a.where === "dream" ? "dreaming" : "playing the real env", true);
    show(a);
  } catch (e) { say(e.message); }
  play.resetting = false;
}

let fpsCount = 0, fpsSince = performance.now();
async function tick() {
  const t0 = performance.now();
  if (play.id && !play.paused && !play.resetting && !play.busy && play.last && !play.last.done) {
    play.busy = true;
    try {
      show(await api("/api/step", {
        id: play.id, keys: [...play.held], driver: choice("driver"), temperature: tau(),
      }));
      fpsCount += 1;
    } catch (e) { say(e.message); }
    play.busy = false;
  }
  const now = performance.now();
  if (now - fpsSince >= 1000) {
    play.fps = (fpsCount * 1000) / (now - fpsSince);
    $("fps").textContent = play.fps.toFixed(1);
    fpsCount = 0; fpsSince = now;
  }
  const period = parseInt($("speed").value, 10);
  setTimeout(tick, Math.max(0, period - (performance.now() - t0)));
}

// ------------------------------------------------------------------------------------------ keys
function markKeys() {
  for (const li of $("keys").children) li.classList.toggle("held", play.held.has(li.dataset.key));
}
function keyName(k) {
  return { ArrowLeft: "\u2190", ArrowRight: "\u2192", ArrowUp: "\u2191", ArrowDown: "\u2193" }[k] || k;
}
function known(e) { return play.info && play.info.controls.some((c) => c.key === e.key); }
window.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" && e.target.type === "number") return;
  if (!known(e)) return;
  e.preventDefault();
  play.held.add(e.key); markKeys();
});
window.addEventListener("keyup", (e) => {
  if (!known(e)) return;
  e.preventDefault();
  play.held.delete(e.key); markKeys();
});
window.addEventListener("blur", () => { play.held.clear(); markKeys(); });

// --------------------------------------------------------------------------------------- V only
function zSliders() { return [...$("zsliders").querySelectorAll("input")]; }
let decoding = false, decodeAgain = false;
async function decode() {
  if (decoding) { decodeAgain = true; return; }
  decoding = true;
  try {
    const z = zSliders().map((s) => parseFloat(s.value));
    draw($("vframe"), (await api("/api/decode", { id: play.id, z })).frame);
  } catch (e) { say(e.message); }
  decoding = false;
  if (decodeAgain) { decodeAgain = false; decode(); }
}
function setZ(values) {
  zSliders().forEach((s, i) => { s.value = values[i]; s.title = `z[${i}] = ${values[i]}`; });
  decode();
}
function buildVOnly(n) {
  const box = $("zsliders");
  for (let i = 0; i < n; i++) {
    const label = document.createElement("label");
    label.textContent = `z${i}`;
    const s = document.createElement("input");
    Object.assign(s, { type: "range", min: -3, max: 3, step: 0.01, value: 0 });
    s.addEventListener("input", decode);
    label.appendChild(s);
    box.appendChild(label);
  }
  $("z-from-world").onclick = () => play.last && setZ(play.last.z);
  $("z-zero").onclick = () => setZ(new Array(n).fill(0));
  $("z-random").onclick = () => setZ(Array.from({ length: n }, () => {
    const u = 1 - Math.random(), v = Math.random(); // Box-Muller: N(0, 1)
    return +(Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)).toFixed(2);
  }));
}

// ------------------------------------------------------------------------------------------ start
async function start() {
  try {
    play.info = await api("/api/info");
    const info = play.info;
    $("agent-name").textContent = `${info.name}: ${info.env} (${info.reward})`;
    $("reward-name").textContent = info.reward.startsWith("time") ? "survived" : "score";
    $("tau").value = info.temperature;
    $("tau-value").textContent = info.temperature.toFixed(2);
    $("driver-agent").disabled = !info.has_controller;
    for (const c of info.controls) {
      const li = document.createElement("li");
      li.dataset.key = c.key;
      li.innerHTML = `<kbd></kbd> `;
      li.firstChild.textContent = keyName(c.key);
      li.appendChild(document.createTextNode(c.label));
      $("keys").appendChild(li);
    }
    buildVOnly(info.z_dim);
    play.id = (await api("/api/new", {})).id;
    $("tau").addEventListener("input", () => { $("tau-value").textContent = tau().toFixed(2); });
    $("restart").onclick = restart;
    $("seed").addEventListener("keydown", (e) => { if (e.key === "Enter") { $("seed").blur(); restart(); } });
    $("pause").onclick = () => {
      play.paused = !play.paused;
      $("pause").textContent = play.paused ? "go on" : "pause";
    };
    document.querySelectorAll("input[name=where]").forEach((r) => { r.onchange = restart; });
    await restart();
    decode();
    tick();
  } catch (e) { say(e.message); }
}
start();
