// The instructor's live view: a small chart per device, silent ones first.
// Everything the server sends is shown as text (textContent), never as HTML.
"use strict";

(() => {
  const grid = document.getElementById("class-live");
  if (!grid) return;
  const SILENT_AFTER = 30; // seconds without a message (the sketch sends every 10 s)
  const POINTS = 60;
  const cards = new Map(); // thing -> {element, plot, times, temperatures, connected, last, lastId}
  let source = null;

  function card(device) {
    const element = document.createElement("article");
    element.className = "card";
    element.dataset.thing = device.thing;
    const title = document.createElement("h3");
    title.textContent = device.thing;
    const owner = document.createElement("p");
    owner.textContent = device.owner;
    const state = document.createElement("p");
    state.className = "state";
    const reading = document.createElement("p");
    reading.className = "reading";
    const chart = document.createElement("div");
    element.append(title, owner, state, reading, chart);
    const entry = {
      element, state, reading, times: [], temperatures: [],
      connected: device.connected, last: device.last_seen, lastId: 0,
    };
    entry.plot = new uPlot(
      {
        width: 220, height: 70, legend: { show: false }, cursor: { show: false },
        scales: { x: { time: true } }, axes: [{ show: false }, { size: 48 }],
        series: [{}, { stroke: "#D55E00", width: 2 }],
      },
      [entry.times, entry.temperatures],
      chart,
    );
    return entry;
  }

  function apply(event) {
    const entry = cards.get(event.thing);
    if (!entry || event.id <= entry.lastId) return; // a device of another class, or seen
    entry.lastId = event.id;
    if (event.kind === "presence") entry.connected = event.connected;
    else entry.last = Math.max(entry.last || 0, event.time);
    if (event.kind === "reading") {
      entry.times.push(event.time);
      entry.temperatures.push(event.temperature);
      if (entry.times.length > POINTS) { entry.times.shift(); entry.temperatures.shift(); }
      entry.reading.textContent = `${event.temperature} °F, ${event.humidity} %`;
      entry.plot.setData([entry.times, entry.temperatures]);
    }
  }

  function silent(entry, now) {
    return !entry.connected || entry.last === null || now - entry.last > SILENT_AFTER;
  }

  function arrange() {
    const now = Date.now() / 1000;
    const entries = [...cards.values()];
    for (const entry of entries) {
      const quiet = silent(entry, now);
      entry.element.classList.toggle("silent", quiet);
      const seen = entry.last === null ? "never seen" : `last ${Math.round(now - entry.last)} s ago`;
      entry.state.textContent = `${entry.connected ? "connected" : "not connected"} · ${seen}`;
    }
    // Silent boards first, the longest silent at the top; then the others by name.
    entries.sort((a, b) => {
      const qa = silent(a, now), qb = silent(b, now);
      if (qa !== qb) return qa ? -1 : 1;
      if (qa) return (a.last || 0) - (b.last || 0);
      return a.element.dataset.thing.localeCompare(b.element.dataset.thing);
    });
    entries.forEach((entry, index) => {
      if (grid.children[index] !== entry.element) grid.insertBefore(entry.element, grid.children[index] || null);
    });
  }

  async function load() {
    const response = await fetch("/class/live/story");
    if (!response.ok) return;
    const story = await response.json();
    grid.replaceChildren();
    cards.clear();
    for (const device of story.devices) {
      const entry = card(device);
      cards.set(device.thing, entry);
      grid.append(entry.element);
      for (const event of device.kept) apply(event);
    }
    arrange();
    if (source) source.close();
    source = new EventSource(`/live/*/events?after=${story.last_id}`);
    window.kitStream = source; // tests read its state
    source.onopen = () => (document.getElementById("live").textContent = "updates live");
    source.onerror = () => (document.getElementById("live").textContent = "reconnecting…");
    for (const kind of ["reading", "led", "presence", "rejected"]) {
      source.addEventListener(kind, (message) => {
        const event = JSON.parse(message.data);
        if (cards.has(event.thing)) apply(event);
        else later(); // registered since this page loaded: load the class again, soon
      });
    }
    source.addEventListener("reload", () => { source.close(); load(); });
  }

  // "All LEDs off" without leaving the page.
  document.getElementById("leds-off").addEventListener("submit", async (event) => {
    event.preventDefault();
    await fetch("/class/leds-off", { method: "POST", body: new FormData(event.target) });
  });

  let reloading = null;
  function later() {
    if (!reloading) reloading = setTimeout(() => { reloading = null; load(); }, 5000);
  }

  setInterval(arrange, 2000);
  load();
})();
