// One job: its facts, payload, result and error, the actions its reader may take, its log
// (followed live) and its history as this console's feed saw it.

import { api, can } from "./api.js";
import { confirmDialog, h, statusBadge, when } from "./dom.js";
import { Feed, newer } from "./live.js";

const CANCELLABLE = new Set(["pending", "running", "waiting"]);
const RETRYABLE = new Set(["failed", "cancelled"]);
// The log shows at most as many lines as a job keeps.
const MAX_LOG_LINES = 10000;

function pretty(value) {
  return value === null || value === undefined ? null : JSON.stringify(value, null, 2);
}

export function jobView(main, app, match) {
  const id = match[1].toLowerCase();
  let job = null;
  let etag = null;
  let gone = false;

  const heading = h("h1", {}, "Job");
  const notice = h("p", { class: "notice", "aria-live": "polite" });
  const cancel = h("button", { type: "button", class: "secondary", disabled: true }, "Cancel");
  const retry = h("button", { type: "button", class: "secondary", disabled: true }, "Retry");
  const remove = h("button", { type: "button", class: "danger", disabled: true }, "Delete");
  const facts = h("dl", { class: "facts" });
  const payload = h("div");
  const result = h("div");
  const error = h("div");
  const historyBody = h("tbody");
  const logText = h("pre", { class: "log" });
  const logState = h("p", { class: "muted" }, "Loading the log…");
  main.append(
    h("p", {}, h("a", { href: "#/jobs" }, "← All jobs")),
    heading,
    h("div", { class: "actions" }, cancel, retry, remove),
    notice,
    h("div", { class: "grid" }, h("section", { class: "panel", "aria-labelledby": "job-facts" }, h("h2", { id: "job-facts" }, "Details"), facts)),
    h("section", { "aria-labelledby": "job-payload" }, h("h2", { id: "job-payload" }, "Payload"), payload),
    h("section", { "aria-labelledby": "job-result" }, h("h2", { id: "job-result" }, "Result"), result),
    h("section", { "aria-labelledby": "job-error" }, h("h2", { id: "job-error" }, "Error"), error),
    h(
      "section",
      { "aria-labelledby": "job-log" },
      h("h2", { id: "job-log" }, "Log"),
      logState,
      h("div", { class: "log-wrap", role: "log", "aria-live": "off", "aria-label": "Job log", tabindex: "0" }, logText),
    ),
    h(
      "section",
      { "aria-labelledby": "job-history" },
      h("h2", { id: "job-history" }, "History"),
      h("p", { class: "muted" }, "Every change to this job that the live feed delivered since this console was opened, newest first."),
      h(
        "div",
        { class: "table-wrap", role: "region", "aria-label": "Job history", tabindex: "0" },
        h(
          "table",
          {},
          h(
            "thead",
            {},
            h("tr", {}, h("th", { scope: "col", class: "num" }, "Revision"), h("th", { scope: "col" }, "Change"), h("th", { scope: "col" }, "Status"), h("th", { scope: "col", class: "num" }, "Attempts"), h("th", { scope: "col" }, "Worker"), h("th", { scope: "col" }, "At")),
          ),
          historyBody,
        ),
      ),
    ),
  );

  function block(container, text, none) {
    container.replaceChildren(text === null ? h("p", { class: "muted" }, none) : h("pre", { tabindex: "0" }, text));
  }

  function fact(name, value) {
    return [h("dt", {}, name), h("dd", {}, value)];
  }

  function render() {
    if (gone) {
      heading.textContent = "Job deleted";
      for (const button of [cancel, retry, remove]) button.disabled = true;
      return;
    }
    if (!job) return;
    heading.textContent = job.name;
    document.title = `${job.name} — Orchestrator console`;
    facts.replaceChildren(
      ...fact("Status", statusBadge(job.status)),
      ...fact("Queue", job.queue),
      ...fact("Priority", String(job.priority)),
      ...fact("Attempts", `${job.attempts} of at most ${job.max_attempts}`),
      ...fact("Worker", job.worker ? `${job.worker}${job.status === "running" ? " (holds the lease)" : " (last lease)"}` : "—"),
      ...fact("Cancel requested", job.cancel_requested ? "yes" : "no"),
      ...fact("Created by", job.created_by),
      ...fact("Created", when(job.created_at)),
      ...fact("Started", when(job.started_at)),
      ...fact("Finished", when(job.finished_at)),
      ...fact("Updated", when(job.updated_at)),
      ...(job.description ? fact("Description", job.description) : []),
      ...(job.depends_on && job.depends_on.length
        ? fact("Depends on", h("ul", { class: "plain" }, ...job.depends_on.map((parent) => h("li", {}, h("a", { href: `#/jobs/${parent}` }, parent)))))
        : []),
      ...("progress" in job && job.progress !== null ? fact("Progress", `${Math.round(job.progress * 100)}%${job.progress_message ? ` — ${job.progress_message}` : ""}`) : []),
    );
    block(payload, pretty(job.payload), "No payload.");
    block(result, pretty(job.result), "No result yet.");
    block(error, job.error || null, "No error.");
    cancel.disabled = !(can(app.user, "cancel-job", job) && CANCELLABLE.has(job.status) && !job.cancel_requested);
    retry.disabled = !(can(app.user, "retry-job", job) && RETRYABLE.has(job.status));
    remove.disabled = !can(app.user, "delete-job", job);
    renderHistory();
  }

  function renderHistory() {
    const entries = [...(app.history.get(id) || [])].reverse();
    if (!entries.length) {
      historyBody.replaceChildren(h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No change seen yet: changes appear here as they happen.")));
      return;
    }
    historyBody.replaceChildren(
      ...entries.map((entry) =>
        h(
          "tr",
          {},
          h("td", { class: "num" }, String(entry.revision)),
          h("td", {}, entry.op),
          h("td", {}, entry.data ? statusBadge(entry.data.status) : "—"),
          h("td", { class: "num" }, entry.data ? String(entry.data.attempts) : "—"),
          h("td", {}, entry.data && entry.data.worker ? entry.data.worker : "—"),
          h("td", {}, when(entry.data ? entry.data.updated_at : entry.seen)),
        ),
      ),
    );
  }

  async function load() {
    try {
      const response = await api("GET", `/api/v1/jobs/${id}`);
      if (!job || newer(job, response.data)) {
        job = response.data;
        etag = response.etag;
      }
      render();
    } catch (err) {
      if (err.status === 404) {
        heading.textContent = "No such job";
        notice.textContent = "This job does not exist (it may have been deleted).";
      } else {
        notice.textContent = `Could not load the job: ${err.message}`;
      }
    }
  }

  async function act(button, work, done) {
    button.disabled = true;
    notice.textContent = "";
    try {
      await work();
      notice.textContent = done;
    } catch (err) {
      notice.textContent = err.message;
    } finally {
      await load();
      button.focus();
    }
  }

  cancel.addEventListener("click", () => act(cancel, () => api("POST", `/api/v1/jobs/${id}/cancel`), "Cancellation requested."));
  retry.addEventListener("click", () => act(retry, () => api("POST", `/api/v1/jobs/${id}/retry`), "The job is pending again."));
  remove.addEventListener("click", async () => {
    const ok = await confirmDialog({ title: "Delete this job?", text: `“${job.name}” will be deleted for everyone. This cannot be undone.`, confirm: "Delete the job", back: "Go back" });
    if (!ok) {
      remove.focus();
      return;
    }
    try {
      await api("DELETE", `/api/v1/jobs/${id}`, { headers: etag ? { "If-Match": etag } : {} });
      app.navigate("#/jobs");
    } catch (err) {
      notice.textContent = err.status === 412 ? "The job changed while you looked at it; check it again before deleting." : err.message;
      await load();
    }
  });

  // The log: loaded over HTTP after the last line shown, then followed on the job's own feed.
  // Lines carry their number, so a line seen twice is dropped and a gap is fetched.
  let lastLine = 0;
  let logShown = [];
  let logLoading = false;
  let logAgain = false;

  function showLog(items) {
    const fresh = items.filter((item) => item.n > lastLine);
    if (!fresh.length) return;
    lastLine = fresh[fresh.length - 1].n;
    const wrap = logText.parentElement;
    const atEnd = wrap.scrollTop + wrap.clientHeight >= wrap.scrollHeight - 4;
    logShown = logShown.concat(fresh.map((item) => `${item.n}  ${item.line}`));
    if (logShown.length > MAX_LOG_LINES) logShown = logShown.slice(-MAX_LOG_LINES);
    logText.textContent = logShown.join("\n");
    logState.textContent = `${lastLine} line${lastLine === 1 ? "" : "s"}, followed live.`;
    if (atEnd) wrap.scrollTop = wrap.scrollHeight;
  }

  async function loadLog() {
    if (logLoading) {
      logAgain = true;
      return;
    }
    logLoading = true;
    try {
      do {
        logAgain = false;
        for (;;) {
          const response = await api("GET", `/api/v1/jobs/${id}/logs?after=${lastLine}&limit=1000`);
          showLog(response.data.items);
          if (response.data.next_after === null) break;
        }
      } while (logAgain && mounted);
      if (lastLine === 0) logState.textContent = "No log line yet: lines appear here as the job's worker writes them.";
    } catch (err) {
      logState.textContent = err.status === 404 ? "No log: the job does not exist." : `Could not load the log: ${err.message}`;
    } finally {
      logLoading = false;
    }
  }

  const logFeed = new Feed(["job_logs"], { job: id });
  logFeed.addEventListener("change", (event) => {
    const change = event.detail;
    if (change.collection !== "job_logs" || change.id !== id || !change.data) return;
    const items = change.data.lines;
    if (items.length && items[0].n > lastLine + 1) loadLog(); // missed lines: fetch them
    else showLog(items);
  });
  logFeed.addEventListener("resync", () => loadLog());
  logFeed.start();

  function onChange(event) {
    const change = event.detail;
    if (change.collection !== "jobs" || change.id !== id) return;
    if (change.op === "delete") {
      gone = true;
      notice.textContent = "This job has been deleted.";
    } else if (newer(job, change.data)) {
      job = change.data;
      etag = null; // a feed body carries no ETag: a delete is then unconditional
      load();
    }
    render();
  }
  function onResync() {
    load();
  }
  app.feed.addEventListener("change", onChange);
  app.feed.addEventListener("resync", onResync);
  let mounted = true;
  app.feed.ready().then(() => mounted && load());
  logFeed.ready().then(() => mounted && loadLog());
  renderHistory();
  return {
    unmount() {
      mounted = false;
      logFeed.stop();
      app.feed.removeEventListener("change", onChange);
      app.feed.removeEventListener("resync", onResync);
    },
  };
}
