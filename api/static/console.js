// Popups: [data-open=id] opens a <dialog>, [data-close] closes it, [data-autoopen] opens on load.
// [data-select-all]: a field whose whole text is selected when focused (a secret to copy).
document.addEventListener("click", (event) => {
  const opener = event.target.closest("[data-open]");
  if (opener) {
    const dialog = document.getElementById(opener.dataset.open);
    if (dialog) dialog.showModal();
    return;
  }
  const closer = event.target.closest("[data-close]");
  if (closer) closer.closest("dialog").close();
});
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("dialog[data-autoopen]").forEach((d) => d.showModal());
});
document.addEventListener("focusin", (event) => {
  if (event.target.matches("[data-select-all]")) event.target.select();
});
