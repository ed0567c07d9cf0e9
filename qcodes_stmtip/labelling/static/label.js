// stmtip label: keyboard-first tip-state labelling. Talks to the JSON API of
// qcodes_stmtip.labelling.server. body[data-state] is loading | ready | busy | done,
// body[data-frame] the frame shown, body[data-actions] counts finished actions.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { config: null, frame: null, selected: new Set(), guess: null, busy: false, actions: 0 };

function setState(name) { document.body.dataset.state = name; }

function status(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  const payload = await response.json();
  if (!response.ok) throw new Error(payload.error || response.statusText);
  return payload;
}

function buildCategories() {
  const box = $("categories");
  box.replaceChildren();
  for (const cat of state.config.categories) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "category";
    button.dataset.category = cat.name;
    const key = document.createElement("kbd");
    key.textContent = cat.key;
    const title = document.createElement("span");
    title.textContent = cat.title;
    button.append(key, title);
    button.addEventListener("click", () => toggle(cat.name));
    box.append(button);
  }
  $("last-key").textContent = String(state.config.categories.length);
}

function paintSelection() {
  for (const button of document.querySelectorAll(".category")) {
    button.classList.toggle("on", state.selected.has(button.dataset.category));
    button.setAttribute("aria-pressed", state.selected.has(button.dataset.category));
  }
}

function toggle(name) {
  if (state.busy || !state.frame) return;
  if (state.selected.has(name)) state.selected.delete(name); else state.selected.add(name);
  paintSelection();
}

function paintProgress(p) {
  const done = p.voted + p.skipped;
  $("progress").textContent = `${done} / ${p.total}  (${p.voted} voted, ${p.skipped} skipped)`;
  $("progress-fill").style.width = `${p.total ? (100 * done) / p.total : 0}%`;
  $("done-labels").textContent = p.labels_csv;
}

function show(payload) {
  paintProgress(payload.progress);
  const frame = payload.frame;
  state.frame = frame;
  state.selected = new Set(frame ? frame.preselect : []);
  state.guess = null;
  document.body.dataset.frame = frame ? frame.name : "";
  if (!frame) {
    setState("done");
    $("done").hidden = false;
    return;
  }
  $("done").hidden = true;
  $("image-error").hidden = true;
  const img = $("frame");
  img.hidden = false;
  img.src = frame.image;
  $("frame-name").textContent = frame.name;
  $("frame-session").textContent = `session ${frame.session} · #${frame.index + 1}`;
  $("frame-source").textContent = frame.source;
  paintSelection();
  if (payload.upcoming) new Image().src = `/api/frame/${payload.upcoming}.png`;
  if (state.config.model) loadGuess(frame.name);
  setState("ready");
}

async function loadGuess(name) {
  $("guess").hidden = false;
  $("guess-body").textContent = "model: thinking…";
  for (const b of document.querySelectorAll(".category")) b.classList.remove("guessed");
  try {
    const g = await api(`/api/guess/${name}`);
    if (!state.frame || state.frame.name !== name) return;
    state.guess = g;
    const body = $("guess-body");
    body.replaceChildren();
    if (g.error) { body.textContent = g.error; return; }
    g.classes.forEach((c, i) => {
      const row = document.createElement("div");
      row.className = "bar" + (c === g.decision ? " decision" : "");
      const label = document.createElement("span");
      label.textContent = c;
      const track = document.createElement("div");
      track.className = "track";
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = `${(100 * g.probabilities[i]).toFixed(1)}%`;
      track.append(fill);
      const value = document.createElement("span");
      value.textContent = g.probabilities[i].toFixed(2);
      row.append(label, track, value);
      body.append(row);
    });
    const verdict = document.createElement("div");
    verdict.className = "verdict";
    verdict.textContent = `decision: ${g.decision ?? "uncertain"}` +
      (g.tip_change_probability == null ? "" : ` · P(tip change) ${g.tip_change_probability.toFixed(2)}`);
    body.append(verdict);
    for (const b of document.querySelectorAll(".category")) {
      b.classList.toggle("guessed", b.dataset.category === g.decision);
    }
  } catch (err) {
    $("guess-body").textContent = `model: ${err.message}`;
  }
}

function acceptGuess() {
  if (!state.guess || !state.guess.decision) return;
  state.selected.add(state.guess.decision);
  if (state.guess.tip_change_probability != null && state.guess.tip_change_probability >= 0.5) {
    state.selected.add("tip_change");
  }
  paintSelection();
}

async function act(label, path, body) {
  if (state.busy) return;
  state.busy = true;
  setState("busy");
  try {
    const payload = await api(path, body);
    show(payload);
    status(label(payload));
  } catch (err) {
    status(err.message, true);
    setState(state.frame ? "ready" : "done");
  } finally {
    state.busy = false;
    state.actions += 1;
    document.body.dataset.actions = String(state.actions);
  }
}

function submit() {
  if (!state.frame || state.busy) return;
  if (state.selected.size === 0) {
    status("tick at least one category, or press S to skip", true);
    return;
  }
  const classes = state.config.categories.map((c) => c.name).filter((c) => state.selected.has(c));
  const name = state.frame.name;
  act(() => `voted ${name}: ${classes.join(", ")}`, "/api/vote", { frame: name, classes });
}

function skip() {
  if (!state.frame || state.busy) return;
  const name = state.frame.name;
  act(() => `skipped ${name}`, "/api/skip", { frame: name });
}

function undo() {
  act((p) => (p.undone ? `undid ${p.undone.action} on ${p.undone.frame}` : "nothing to undo"),
    "/api/undo", {});
}

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const help = $("help");
  if (event.key === "?") { help.open ? help.close() : help.showModal(); event.preventDefault(); return; }
  if (help.open) return;
  const key = event.key;
  const index = state.config ? state.config.categories.findIndex((c) => c.key === key) : -1;
  if (index >= 0) {
    toggle(state.config.categories[index].name);
  } else if (key === "Enter" || key === " ") {
    submit();
  } else if (key === "s" || key === "S") {
    skip();
  } else if (key === "u" || key === "U" || key === "Backspace") {
    undo();
  } else if (key === "g" || key === "G") {
    acceptGuess();
  } else {
    return;
  }
  event.preventDefault();
}

async function start() {
  try {
    state.config = await api("/api/config");
    $("who").textContent = `${state.config.surface} · labeller ${state.config.labeller}`;
    $("done-votes").textContent = `votes/${state.config.labeller}.csv`;
    buildCategories();
    $("frame").addEventListener("error", () => {
      if (!state.frame) return;
      $("frame").hidden = true;
      const box = $("image-error");
      box.hidden = false;
      box.textContent = `cannot draw ${state.frame.name}; press S to skip it`;
    });
    $("submit").addEventListener("click", submit);
    $("skip").addEventListener("click", skip);
    $("undo").addEventListener("click", undo);
    $("accept-guess").addEventListener("click", acceptGuess);
    $("help-button").addEventListener("click", () => $("help").showModal());
    document.addEventListener("keydown", onKey);
    // Buttons must not keep focus, or Space/Enter would also "click" them.
    document.addEventListener("mouseup", () => document.activeElement?.blur());
    show(await api("/api/next"));
  } catch (err) {
    status(`cannot start: ${err.message}`, true);
    setState("error");
  }
}

start();
