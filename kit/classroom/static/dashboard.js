// The student's live dashboard: history, then live points, the LED, the message console.
// Everything the server sends is shown as text (textContent), never as HTML.
"use strict";

(() => {
  const root = document.getElementById("dashboard");
  if (!root) return;
  const thing = root.dataset.thing;
  const csrf = root.dataset.csrf;
  const $ = (id) => document.getElementById(id);
  const KEEP_POINTS = 2000;
  const CONSOLE_LINES = 50;

  // The device drop-down: a new choice loads its page (without JavaScript: the Show button).
  $("thing").addEventListener("change", (event) => {
    window.location.search = "?thing=" + encodeURIComponent(event.target.value);
  });

  const times = [], temperatures = [], humidities = [];
  const slider = $("brightness");
  let lastMessage = null;
  let source = null;

  const plot = new uPlot(
    {
      width: Math.min(root.clientWidth || 800, 900),
      height: 320,
      scales: { x: { time: true }, t: {}, h: { range: [0, 100] } },
      series: [
        {},
        { label: "Temperature °F", scale: "t", stroke: "#D55E00", width: 2 },
        { label: "Humidity %", scale: "h", stroke: "#0072B2", width: 2 },
      ],
      axes: [
        {},
        { scale: "t", label: "°F", stroke: "#D55E00" },
        { scale: "h", label: "%", side: 1, stroke: "#0072B2", grid: { show: false } },
      ],
    },
    [times, temperatures, humidities],
    $("chart"),
  );
  window.kitPlot = plot; // tests read what it shows

  function addReading(event) {
    times.push(event.time);
    temperatures.push(event.temperature);
    humidities.push(event.humidity);
    if (times.length > KEEP_POINTS) [times, temperatures, humidities].forEach((a) => a.shift());
  }

  function clock(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString();
  }

  function log(event) {
    const line = document.createElement("li");
    if (event.kind === "reading") {
      line.textContent = `${clock(event.time)} ${event.temperature} °F, ${event.humidity} %`;
    } else if (event.kind === "led") {
      line.textContent = `${clock(event.time)} LED at ${event.value} %`;
    } else if (event.kind === "presence") {
      line.textContent = `${clock(event.time)} ${event.connected ? "connected" : "disconnected"}`;
    } else if (event.kind === "rejected") {
      line.className = "rejected";
      line.textContent = `${clock(event.time)} not understood (${event.reason}): ${event.payload}`;
    } else {
      return;
    }
    const list = $("console");
    list.prepend(line);
    while (list.children.length > CONSOLE_LINES) list.lastElementChild.remove();
  }

  let asked = false; // until the student moves it, the slider shows what the board reported

  function apply(event) {
    if (event.kind === "reading") addReading(event);
    if (event.kind === "led") {
      $("reported").textContent = `${event.value} %`;
      if (!asked) slider.value = event.value;
    }
    if (event.kind === "presence") showPresence(event.connected);
    if (event.kind !== "presence") lastMessage = Math.max(lastMessage || 0, event.time);
    log(event);
  }

  function showPresence(connected) {
    $("presence").textContent =
      connected === null ? "never connected" : connected ? "connected now" : "not connected";
  }

  async function load() {
    const response = await fetch(`/live/${encodeURIComponent(thing)}/story`);
    if (!response.ok) {
      $("live").textContent = "this device is not yours";
      return;
    }
    const story = await response.json();
    times.length = temperatures.length = humidities.length = 0;
    $("console").replaceChildren();
    showPresence(story.connected);
    lastMessage = story.last_seen;
    for (const event of story.recorded.concat(story.kept)) apply(event);
    plot.setData([times, temperatures, humidities]);
    follow(story.last_id);
  }

  function follow(after) {
    if (source) source.close();
    source = new EventSource(`/live/${encodeURIComponent(thing)}/events?after=${after}`);
    window.kitStream = source; // tests read its state
    source.onopen = () => ($("live").textContent = "updates live");
    source.onerror = () => ($("live").textContent = "reconnecting…"); // it retries by itself
    for (const kind of ["reading", "led", "presence", "rejected"]) {
      source.addEventListener(kind, (message) => {
        apply(JSON.parse(message.data));
        if (kind === "reading") plot.setData([times, temperatures, humidities]);
      });
    }
    // A gap too old to fill: load the whole story again.
    source.addEventListener("reload", () => {
      source.close();
      load();
    });
  }

  setInterval(() => {
    $("age").textContent =
      lastMessage === null ? "never" : `${Math.max(0, Math.round(Date.now() / 1000 - lastMessage))} s ago`;
  }, 1000);

  // The LED: the slider sends at most every 250 ms while it moves, and once where it stops;
  // the radio buttons switch it fully on or off.
  let pending = null, timer = null;

  async function send(value) {
    asked = true;
    $("asked").textContent = String(value);
    const body = new FormData();
    body.append("csrf", csrf);
    body.append("value", String(value));
    const response = await fetch(`/live/${encodeURIComponent(thing)}/led`, {
      method: "POST",
      body,
      headers: { Accept: "application/json" },
    });
    if (!response.ok) $("asked").textContent = `${value} (refused: ${await response.text()})`;
  }

  function soon(value) {
    pending = value;
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      send(pending);
    }, 250);
  }

  slider.addEventListener("input", () => soon(Number(slider.value)));
  document.querySelectorAll("input[name=switch]").forEach((radio) => {
    radio.addEventListener("change", () => {
      slider.value = radio.value;
      send(Number(radio.value));
    });
  });

  load();
})();
