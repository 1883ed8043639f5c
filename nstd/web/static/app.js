"use strict";
// Polls /api/state every two seconds and draws it; no framework, no build step.
let csrf = "";

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function fill(id, items, empty) {
  const box = document.getElementById(id);
  box.replaceChildren(...(items.length ? items : [el("p", {class: "quiet"}, empty)]));
}

function seconds(s) {
  if (s === null || s === undefined) return "?";
  s = Math.round(s);
  return s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`
       : s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

function drawRunning(cur) {
  if (!cur) return fill("running", [], "Nothing is running.");
  const frac = cur.iterations ? cur.iteration / cur.iterations : 0;
  const done = cur.frames ? (cur.frame - 1 + frac) / cur.frames : frac;  // a clip: over all its frames
  const scale = cur.scales ? ` · scale ${cur.scale}/${cur.scales}` : "";
  const tile = cur.tiles ? ` · tile ${cur.tile}/${cur.tiles}` : "";
  const frame = cur.frames ? ` · frame ${cur.frame}/${cur.frames}` : "";  // a clip
  const parts = [
    el("p", {}, el("strong", {}, cur.name), frame, scale, tile),
    el("progress", {id: "progress", max: "1", value: String(done)}),
    el("p", {id: "progress-text"}, `iteration ${cur.iteration || 0}/${cur.iterations || "?"} · ETA ${seconds(cur.eta)}`),
  ];
  if (cur.preview) parts.push(el("img", {src: `${cur.preview}?t=${Date.now()}`, alt: "latest preview"}));
  fill("running", parts);
}

function drawGallery(items) {
  fill("gallery", items.map(r => {
    const inputs = el("div", {class: "inputs"});
    if (r.content) inputs.append(el("img", {src: r.content, alt: "content"}));
    for (const s of r.styles.slice(0, 1)) if (s) inputs.append(el("img", {src: s, alt: "style"}));
    return el("div", {class: "result"},
      el("a", {href: r.image, target: "_blank", class: "result-link"}, el("img", {class: "main", src: r.image, alt: r.name})),
      inputs, el("div", {}, r.name, " · ", el("a", {href: r.report, target: "_blank"}, "report")));
  }), "No results yet.");
}

function drawFailed(items) {
  fill("failed", items.map(f => {
    const li = el("li", {}, el("strong", {}, f.name), ` (${f.phase}): `, el("span", {class: "error"}, f.message), " ",
                  el("a", {href: f.error, target: "_blank"}, "error.yaml"), " ");
    if (f.retry) {
      const b = el("button", {class: "retry", "data-name": f.name}, "Retry");
      b.addEventListener("click", () => post("/api/retry", JSON.stringify({name: f.name}), "application/json"));
      li.append(b);
    }
    return li;
  }), "No failed jobs.");
}

async function post(url, body, type) {
  const headers = {"X-CSRF-Token": csrf};
  if (type) headers["Content-Type"] = type;
  const r = await fetch(url, {method: "POST", body, headers, credentials: "same-origin"});
  const data = await r.json().catch(() => ({}));
  refresh();
  return [r.ok, data];
}

async function refresh() {
  try {
    const r = await fetch("/api/state", {credentials: "same-origin"});
    if (!r.ok) throw new Error(`${r.status}`);
    const s = await r.json();
    csrf = s.csrf;
    const daemons = s.daemons.map(d => el("span", {}, el("span", {class: d.alive ? "dot" : "dot down"}),
                                          `${d.host} pid ${d.pid}: ${d.alive ? d.state : "NOT RUNNING"} `));
    document.getElementById("daemons").replaceChildren(...daemons);
    drawRunning(s.current);
    const queue = s.queue.map(q => el("li", {}, `${q.name} — ready, waiting for a worker`))
      .concat(s.waiting.map(w => el("li", {}, `${w.name} — `, el("span", {class: "quiet"}, w.reason))));
    if (s.fleet) queue.push(el("li", {class: "quiet"}, `fleet queue: ${s.fleet.waiting || 0} waiting, ${s.fleet.running || 0} running`));
    fill("queue", queue, "The inbox is empty.");
    drawGallery(s.gallery);
    drawFailed(s.failed);
    document.getElementById("updated").textContent = new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById("daemons").textContent = `cannot reach the daemon (${e.message})`;
  }
}

function setupUpload() {
  const form = document.getElementById("upload"), drop = document.getElementById("drop");
  const content = form.elements.content, style = form.elements.style;
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const [ok, data] = await post("/api/upload", new FormData(form));
    document.getElementById("upload-result").textContent = ok ? `Queued as ${data.job}.` : `Refused: ${data.error}`;
    if (ok) form.reset();
  });
  drop.addEventListener("dragover", ev => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", ev => {
    ev.preventDefault(); drop.classList.remove("over");
    const files = [...ev.dataTransfer.files].filter(f => f.type.startsWith("image/"));
    if (!files.length) return;
    const first = new DataTransfer(), rest = new DataTransfer();
    first.items.add(files[0]);
    files.slice(1).forEach(f => rest.items.add(f));
    content.files = first.files;
    if (files.length > 1) style.files = rest.files;
    drop.textContent = `${files[0].name} as the content` + (files.length > 1 ? `, ${files.length - 1} style(s)` : "");
  });
}

setupUpload();
refresh();
setInterval(refresh, 2000);
