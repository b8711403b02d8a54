// Lore workspace: let htmx swap our inline-error partials (4xx), Ctrl/Cmd+S to save, and
// waiting clocks.
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
// Waiting times keep counting between the server's updates, from the seconds it rendered.
function showElapsed() {
  const now = Date.now();
  document.querySelectorAll("[data-elapsed-s]").forEach((el) => {
    if (!el.dataset.seenAt) {
      el.dataset.seenAt = String(now);
    }
    const seconds = Number(el.dataset.elapsedS) + Math.floor((now - Number(el.dataset.seenAt)) / 1000);
    el.textContent = seconds < 60
      ? `${seconds} s`
      : `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, "0")} s`;
  });
}
setInterval(showElapsed, 1000);
document.addEventListener("htmx:afterSettle", showElapsed);
// Ask an NPC: the answer streams in as the model writes it (one JSON event per line), with
// what it waits behind and a clock; Cancel closes the connection, which stops the model.
function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form[data-ask-form]");
  if (!form) {
    return;
  }
  event.preventDefault();
  const button = form.querySelector("#ask-button");
  const progress = form.querySelector("#ask-progress");
  const waiting = form.querySelector("#ask-waiting");
  const clock = progress.querySelector("[data-elapsed-s]");
  const cancel = form.querySelector("#ask-cancel");
  const out = document.getElementById("ask-answer");
  const persona = form.querySelector("#id_persona").selectedOptions[0]?.textContent || "";
  const controller = new AbortController();
  const stop = () => controller.abort();
  let written = null;

  function show(message) {
    if (message.type === "waiting") {
      const ahead = [];
      if (message.answering) {
        ahead.push(`${plural(message.answering, "other answer")} ahead`);
      }
      if (message.bronze_running) {
        ahead.push(`${plural(message.bronze_running, "storyteller job")} running on it`);
      }
      waiting.textContent = `Waiting for the ${message.tier} model` +
        (ahead.length ? `: ${ahead.join(", ")}` : "");
      waiting.dataset.tier = message.tier;
    } else if (message.type === "text") {
      if (!written) {
        const quote = document.createElement("blockquote");
        quote.className = "answer";
        quote.id = "npc-streaming";
        const who = document.createElement("b");
        who.textContent = `${persona}: `;
        written = document.createElement("span");
        quote.append(who, written);
        out.replaceChildren(quote);
        waiting.textContent = `The ${waiting.dataset.tier || ""} model is writing`;
      }
      written.textContent += message.text;
    } else if (message.type === "done") {
      out.innerHTML = message.html;
    }
  }

  cancel.addEventListener("click", stop);
  button.disabled = true;
  clock.dataset.elapsedS = "0";
  delete clock.dataset.seenAt;
  clock.textContent = "0 s";
  waiting.textContent = "Sending the question";
  progress.hidden = false;
  out.replaceChildren();
  try {
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      signal: controller.signal,
    });
    if (!response.ok || !response.body) {
      out.innerHTML = await response.text();
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        break;
      }
      buffered += decoder.decode(value, { stream: true });
      let newline = buffered.indexOf("\n");
      while (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line) {
          show(JSON.parse(line));
        }
        newline = buffered.indexOf("\n");
      }
    }
  } catch (error) {
    const note = document.createElement("p");
    if (error.name === "AbortError") {
      note.id = "ask-cancelled";
      note.className = "muted";
      note.textContent = "Cancelled: the model was stopped.";
    } else {
      note.className = "error";
      note.textContent = `The answer was interrupted (${error.message}); ask again.`;
    }
    out.append(note);
  } finally {
    cancel.removeEventListener("click", stop);
    button.disabled = false;
    progress.hidden = true;
  }
});
