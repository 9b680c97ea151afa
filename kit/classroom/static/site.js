// Only an improvement: every form works without JavaScript.
document.querySelectorAll("button[data-copy]").forEach((button) => {
  button.addEventListener("click", async () => {
    const text = document.getElementById(button.dataset.copy).value;
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      document.getElementById(button.dataset.copy).select();
      button.textContent = "Selected: press Ctrl+C";
    }
  });
});

// A removal asks first (without JavaScript it happens at once, as the button says). Listening
// on the document also covers the forms of a table fetched again.
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

// A table with data-refresh fetches itself again every 5 seconds (without JavaScript, the
// page reloads itself instead), leaving alone what the instructor is typing elsewhere.
const refreshed = document.querySelector("table[data-refresh]");
if (refreshed) {
  setInterval(async () => {
    try {
      const response = await fetch(refreshed.dataset.refresh, { credentials: "same-origin" });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      const table = fresh.querySelector("table[data-refresh]");
      if (table) document.querySelector("table[data-refresh]").replaceWith(table);
    } catch {
      // The server is restarting or the network dropped: the next round tries again.
    }
  }, 5000);
}
