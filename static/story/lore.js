// Lore workspace: let htmx swap our inline-error partials (4xx), and Ctrl/Cmd+S to save.
document.addEventListener("htmx:beforeSwap", (event) => {
  const status = event.detail.xhr.status;
  if ([400, 403, 409, 503].includes(status) && event.detail.requestConfig.elt.closest("main")) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "s") {
    const form = document.querySelector("form[data-lore-form]");
    if (form) {
      event.preventDefault();
      form.requestSubmit();
    }
  }
});
// In a merge, typing in a field both writers changed means "use my edit" for that field.
document.addEventListener("input", (event) => {
  const name = event.target.name;
  const edit = name && document.querySelector(`#merge-${CSS.escape(name)} input[value=edit]`);
  if (edit) {
    edit.checked = true;
  }
});
