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

// A removal asks first (without JavaScript it happens at once, as the button says).
document.querySelectorAll("form[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
});
