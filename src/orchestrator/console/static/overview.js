// The overview: counts by status and queue (GET /api/v1/queues), running jobs, the workers
// holding leases, and how many jobs finished each minute, drawn by the page itself.

import { api, query } from "./api.js";
import { age, h, s } from "./dom.js";

const MINUTES = 15;
const RUNNING_LIMIT = 200;
const FINISHED_SAMPLE = 500;

/** "paused" or "active", and the queue's global cap on running jobs when it has one. */
function queueState(queue) {
  const state = queue.paused ? h("span", { class: "status status-paused" }, "paused") : h("span", { class: "status status-active" }, "active");
  const limit = typeof queue.max_running === "number" ? ` at most ${queue.max_running} running` : "";
  return [state, limit];
}

/** The queue's PATCH route (admins): its name may hold any character, `/` too. */
function queuePath(name) {
  return `/api/v1/queues/${name.split("/").map(encodeURIComponent).join("/")}`;
}

export function overviewView(main, app) {
  const notice = h("p", { class: "notice", "aria-live": "polite" });
  const totals = h("ul", { class: "cards", "aria-label": "Jobs by status" });
  const queuesHead = h("thead");
  const queuesBody = h("tbody");
  const queuesNote = h("p", { class: "muted" });
  const runningBody = h("tbody");
  const workersList = h("ul");
  const chart = h("div");
  main.append(
    h("h1", {}, "Overview"),
    notice,
    h("section", { "aria-labelledby": "ov-status" }, h("h2", { id: "ov-status" }, "Jobs by status"), totals),
    h(
      "section",
      { "aria-labelledby": "ov-queues" },
      h("h2", { id: "ov-queues" }, "Queues"),
      queuesNote,
      h(
        "div",
        { class: "table-wrap", role: "region", "aria-label": "Queues table", tabindex: "0" },
        h("table", {}, queuesHead, queuesBody),
      ),
    ),
    h(
      "div",
      { class: "grid" },
      h("section", { "aria-labelledby": "ov-throughput", class: "panel" }, h("h2", { id: "ov-throughput" }, `Finished per minute, last ${MINUTES} minutes`), chart),
      h("section", { "aria-labelledby": "ov-workers", class: "panel" }, h("h2", { id: "ov-workers" }, "Workers holding leases"), workersList),
    ),
    h(
      "section",
      { "aria-labelledby": "ov-running" },
      h("h2", { id: "ov-running" }, "Running jobs"),
      h(
        "div",
        { class: "table-wrap", role: "region", "aria-label": "Running jobs table", tabindex: "0" },
        h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Title"), h("th", { scope: "col" }, "Queue"), h("th", { scope: "col" }, "Worker"), h("th", { scope: "col" }, "Running for"))), runningBody),
      ),
    ),
  );

  const running = new Map(); // id -> job
  const finished = new Map(); // id -> {at, ok}
  let queues = null;
  let queuesAvailable = true;
  let refocus = null;
  let timer = 0;
  let redraw = 0;

  function renderTotals() {
    const counts = Object.fromEntries(app.statuses.list().map((st) => [st, 0]));
    if (queues) {
      for (const queue of queues) for (const [st, n] of Object.entries(queue.counts || {})) counts[st] = (counts[st] || 0) + n;
    } else {
      counts.running = running.size;
    }
    totals.replaceChildren(
      ...Object.entries(counts).map(([st, n]) =>
        h("li", {}, h("span", { class: "count" }, queues || st === "running" ? n.toLocaleString() : "—"), h("a", { href: `#/jobs${query({ status: st })}` }, st)),
      ),
    );
  }

  function renderQueues() {
    const wrap = queuesBody.closest(".table-wrap");
    if (wrap) wrap.hidden = !queuesAvailable;
    if (!queuesAvailable) {
      queuesNote.textContent = "This server does not report queue statistics (GET /api/v1/queues).";
      queuesBody.replaceChildren();
      return;
    }
    if (!queues) return;
    // A button pressed (disabled meanwhile, so not focused now) or focused keeps the focus.
    const focused = refocus || (queuesBody.contains(document.activeElement) ? document.activeElement.dataset.focus : null);
    refocus = null;
    queuesNote.textContent = "";
    const statuses = app.statuses.list();
    queuesHead.replaceChildren(
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "Queue"),
        h("th", { scope: "col" }, "State"),
        ...statuses.map((st) => h("th", { scope: "col", class: "num" }, st)),
        h("th", { scope: "col", class: "num" }, "Scheduled"),
        h("th", { scope: "col" }, "Oldest pending"),
      ),
    );
    if (!queues.length) {
      queuesBody.replaceChildren(h("tr", {}, h("td", { colspan: String(statuses.length + 4), class: "muted" }, "No queue has jobs yet.")));
      return;
    }
    queuesBody.replaceChildren(
      ...queues.map((queue) =>
        h(
          "tr",
          { "data-queue": queue.name },
          h("th", { scope: "row" }, h("a", { href: `#/jobs${query({ queue: queue.name })}` }, queue.name)),
          h("td", {}, queueState(queue), app.user.role === "admin" ? [" ", pauseButton(queue)] : null),
          ...statuses.map((st) => h("td", { class: "num" }, ((queue.counts || {})[st] ?? 0).toLocaleString())),
          h("td", { class: "num" }, typeof queue.scheduled === "number" ? queue.scheduled.toLocaleString() : "—"),
          h("td", {}, queue.oldest_pending_at ? `${age(queue.oldest_pending_at)} ago` : "—"),
        ),
      ),
    );
    if (focused) {
      const again = [...queuesBody.querySelectorAll("[data-focus]")].find((el) => el.dataset.focus === focused);
      if (again) again.focus();
    }
  }

  function pauseButton(queue) {
    const verb = queue.paused ? "Resume" : "Pause";
    const button = h("button", { type: "button", class: "secondary small", "data-focus": `pause:${queue.name}` }, `${verb} ${queue.name}`);
    button.addEventListener("click", async () => {
      refocus = button.dataset.focus;
      button.disabled = true;
      notice.textContent = "";
      try {
        const { data } = await api("PATCH", queuePath(queue.name), { body: { paused: !queue.paused } });
        upsertQueue(data);
        notice.textContent = `Queue ${queue.name} ${data.paused ? "paused: it hands out no claims; running jobs go on" : "resumed"}.`;
      } catch (error) {
        notice.textContent = `${queue.name}: ${error.message}`;
        button.disabled = false;
      }
      render();
    });
    return button;
  }

  function upsertQueue(queue) {
    if (!queues) return;
    const at = queues.findIndex((q) => q.name === queue.name);
    if (at === -1) queues = [...queues, queue].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    else queues[at] = queue;
  }

  function renderRunning() {
    const jobs = [...running.values()].sort((a, b) => (a.started_at || "").localeCompare(b.started_at || ""));
    runningBody.replaceChildren(
      ...(jobs.length
        ? jobs.slice(0, 50).map((job) =>
            h("tr", {}, h("td", {}, h("a", { href: `#/jobs/${job.id}` }, job.name)), h("td", {}, job.queue), h("td", {}, job.worker || "—"), h("td", {}, age(job.started_at))),
          )
        : [h("tr", {}, h("td", { colspan: "4", class: "muted" }, "No job is running."))]),
    );
    const workers = new Map();
    for (const job of running.values()) if (job.worker) workers.set(job.worker, (workers.get(job.worker) || 0) + 1);
    workersList.replaceChildren(
      ...(workers.size
        ? [...workers.entries()].sort().map(([name, n]) => h("li", {}, `${name}: ${n} running job${n === 1 ? "" : "s"}`))
        : [h("li", { class: "muted" }, "No worker holds a lease.")]),
    );
  }

  function renderChart() {
    const now = Date.now();
    const start = now - MINUTES * 60000;
    const ok = new Array(MINUTES).fill(0);
    const bad = new Array(MINUTES).fill(0);
    for (const [id, entry] of finished) {
      if (entry.at < start) {
        finished.delete(id);
        continue;
      }
      const bucket = Math.min(MINUTES - 1, Math.floor((entry.at - start) / 60000));
      (entry.ok ? ok : bad)[bucket] += 1;
    }
    const peak = Math.max(1, ...ok.map((n, i) => n + bad[i]));
    const width = 300;
    const height = 120;
    const barWidth = width / MINUTES;
    const totalOk = ok.reduce((a, b) => a + b, 0);
    const totalBad = bad.reduce((a, b) => a + b, 0);
    const titleId = "chart-title";
    const bars = [];
    for (let i = 0; i < MINUTES; i += 1) {
      const okHeight = (ok[i] / peak) * (height - 20);
      const badHeight = (bad[i] / peak) * (height - 20);
      const x = i * barWidth + 1;
      bars.push(s("rect", { class: "bar-ok", x, y: height - 12 - okHeight, width: barWidth - 2, height: okHeight }));
      bars.push(s("rect", { class: "bar-failed", x, y: height - 12 - okHeight - badHeight, width: barWidth - 2, height: badHeight }));
    }
    chart.replaceChildren(
      s(
        "svg",
        { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": titleId },
        s("title", { id: titleId }, `${totalOk} succeeded and ${totalBad} failed in the last ${MINUTES} minutes; at most ${peak} in one minute.`),
        ...bars,
        s("line", { class: "axis", x1: 0, y1: height - 11, x2: width, y2: height - 11 }),
        s("text", { x: 0, y: height - 1 }, `${MINUTES} min ago`),
        s("text", { x: width, y: height - 1, "text-anchor": "end" }, "now"),
      ),
      h("p", { class: "legend" }, h("span", { class: "ok" }, `succeeded: ${totalOk}`), h("span", { class: "failed" }, `failed: ${totalBad}`)),
    );
  }

  function render() {
    redraw = 0;
    renderTotals();
    renderQueues();
    renderRunning();
    renderChart();
  }
  function renderSoon() {
    if (!redraw) redraw = requestAnimationFrame(render);
  }

  function noteFinished(job) {
    if ((job.status === "succeeded" || job.status === "failed") && job.finished_at) {
      finished.set(job.id, { at: new Date(job.finished_at).getTime(), ok: job.status === "succeeded" });
    }
  }

  async function loadQueues() {
    try {
      const { data } = await api("GET", "/api/v1/queues");
      queues = data.items;
      app.statuses.noteQueues(queues);
      queuesAvailable = true;
    } catch (error) {
      if (error.status === 404) queuesAvailable = false;
      else notice.textContent = `Could not load queue statistics: ${error.message}`;
    }
  }

  async function load() {
    try {
      const [runningJobs, succeeded, failed] = await Promise.all([
        api("GET", `/api/v1/jobs${query({ status: "running", order: "desc", limit: RUNNING_LIMIT })}`),
        api("GET", `/api/v1/jobs${query({ status: "succeeded", order: "desc", limit: FINISHED_SAMPLE })}`),
        api("GET", `/api/v1/jobs${query({ status: "failed", order: "desc", limit: FINISHED_SAMPLE })}`),
        loadQueues(),
      ]);
      running.clear();
      for (const job of runningJobs.data.jobs) running.set(job.id, job);
      for (const job of [...succeeded.data.jobs, ...failed.data.jobs]) noteFinished(job);
    } catch (error) {
      notice.textContent = `Could not load the overview: ${error.message}`;
    }
    render();
  }

  let queuesTimer = 0;
  function onChange(event) {
    const change = event.detail;
    if (change.collection === "queues") {
      if (change.data) upsertQueue(change.data);
      renderSoon();
      return;
    }
    if (change.collection !== "jobs") return;
    const job = change.data;
    if (change.op === "delete" || !job || job.status !== "running") running.delete(change.id);
    else running.set(job.id, job);
    if (job) noteFinished(job);
    // Queue counts come from the server; fetch them again at most twice a second.
    if (queuesAvailable && !queuesTimer) {
      queuesTimer = setTimeout(async () => {
        queuesTimer = 0;
        await loadQueues();
        renderSoon();
      }, 500);
    }
    renderSoon();
  }
  function onResync() {
    load();
  }

  app.feed.addEventListener("change", onChange);
  app.feed.addEventListener("resync", onResync);
  timer = setInterval(renderSoon, 10000);
  document.title = "Overview — Orchestrator console";
  let mounted = true;
  app.feed.ready().then(() => mounted && load());
  return {
    unmount() {
      mounted = false;
      clearInterval(timer);
      clearTimeout(queuesTimer);
      if (redraw) cancelAnimationFrame(redraw);
      app.feed.removeEventListener("change", onChange);
      app.feed.removeEventListener("resync", onResync);
    },
  };
}


