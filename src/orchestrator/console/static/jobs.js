// The jobs table: one page at a time (the API's cursors), newest first, kept live by the feed.

import { api, can, query } from "./api.js";
import { confirmDialog, h, statusBadge, uid, when } from "./dom.js";
import { newer } from "./live.js";

export const PAGE_SIZE = 50;
const REFRESH_DELAY_MS = 400;
const FLASH = [{ backgroundColor: "#fef9c3" }, { backgroundColor: "rgba(254, 249, 195, 0)" }];
const calm = matchMedia("(prefers-reduced-motion: reduce)");
const MAX_QUEUED = 2000;

function filtersFrom(hash) {
  const params = new URLSearchParams(hash.split("?")[1] || "");
  return { status: params.get("status") || "", queue: params.get("queue") || "", search: params.get("search") || "" };
}

/** Newest first: positive when `a` comes before `b`. */
function compare(a, b) {
  if (a.created_at !== b.created_at) return a.created_at > b.created_at ? 1 : -1;
  if (a.id === b.id) return 0;
  return a.id > b.id ? 1 : -1;
}

/** One action on many jobs at once (POST /api/v1/jobs/bulk); resolves to {matched, changed}. */
export async function bulkAction(action, ids) {
  const { data } = await api("POST", "/api/v1/jobs/bulk", { body: { action, ids } });
  return data;
}

// What each action on a selection says: the confirmation, and the outcome.
const BULK = {
  cancel: {
    button: "Cancel selected",
    verb: "Cancel",
    done: "Cancelled",
    explain: "pending ones are cancelled at once, running ones are asked to stop; finished ones cannot be cancelled.",
  },
  retry: {
    button: "Retry selected",
    verb: "Retry",
    done: "Retried",
    explain: "failed and cancelled ones become pending again with their attempts reset; others are left as they are.",
  },
  delete: {
    button: "Delete selected",
    verb: "Delete",
    done: "Deleted",
    explain: "they are deleted for everyone, whatever their status. This cannot be undone.",
  },
};

export function jobsView(main, app) {
  const filters = filtersFrom(location.hash);
  const rows = new Map(); // id -> {tr, job, cells}
  const selected = new Map(); // id -> name
  let pages = [{ cursor: null, upper: null }];
  let nextCursor = null;
  let hasMore = false; // older jobs exist beyond this page
  let stale = false; // rows moved to the next page since nextCursor was issued
  let loading = true; // until the first page is in: changes wait for it
  let mounted = true;
  let buffered = [];
  let queued = [];
  let frame = 0;
  let refreshTimer = 0;
  let generation = 0;
  const mayCancel = can(app.user, "cancel-job");

  // ---- filters
  const statusSelect = h("select", { id: uid("status"), name: "status" });
  function statusOptions() {
    const chosen = statusSelect.value || filters.status;
    const shown = app.statuses.list();
    // A status named in the address but unknown here is still offered: the API judges it.
    if (chosen && !shown.includes(chosen)) shown.push(chosen);
    statusSelect.replaceChildren(h("option", { value: "" }, "Any status"), ...shown.map((st) => h("option", { value: st }, st)));
    statusSelect.value = chosen;
  }
  statusOptions();
  const queueInput = h("input", { id: uid("queue"), name: "queue", value: filters.queue, autocomplete: "off", spellcheck: "false" });
  const searchInput = h("input", { id: uid("search"), name: "search", type: "search", value: filters.search, autocomplete: "off" });
  const filterError = h("p", { class: "form-error", "aria-live": "polite" });
  const filterForm = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter jobs" },
    h("div", { class: "field" }, h("label", { for: statusSelect.id }, "Status"), statusSelect),
    h("div", { class: "field" }, h("label", { for: queueInput.id }, "Queue"), queueInput),
    h("div", { class: "field" }, h("label", { for: searchInput.id }, "Search"), searchInput),
  );

  // ---- selection and actions
  const notice = h("p", { class: "notice", "aria-live": "polite" });
  const selectionCount = h("span", { class: "muted" }, "No job selected");
  const bulkButtons = Object.fromEntries(
    Object.entries(BULK).map(([action, words]) => [action, h("button", { type: "button", class: action === "retry" ? "secondary" : "danger", disabled: true }, words.button)]),
  );
  const selectAll = h("input", { type: "checkbox", "aria-label": "Select all jobs on this page", disabled: !mayCancel });

  // ---- table
  const tbody = h("tbody");
  const empty = h("tr", {}, h("td", { colspan: "9", class: "muted" }, "No jobs match these filters."));
  const table = h(
    "table",
    {},
    h("caption", { class: "visually-hidden" }, "Jobs, newest first"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { class: "select", scope: "col" }, selectAll),
        h("th", { scope: "col" }, "Title"),
        h("th", { scope: "col" }, "Queue"),
        h("th", { scope: "col" }, "Status"),
        h("th", { scope: "col", class: "num" }, "Attempts"),
        h("th", { scope: "col", class: "num hide-narrow" }, "Priority"),
        h("th", { scope: "col", class: "hide-narrow" }, "Worker"),
        h("th", { scope: "col", class: "hide-narrow" }, "Created"),
        h("th", { scope: "col", class: "hide-narrow" }, "Updated"),
      ),
    ),
    tbody,
  );
  const newer_ = h("button", { type: "button", class: "secondary", disabled: true }, "Newer jobs");
  const older = h("button", { type: "button", class: "secondary", disabled: true }, "Older jobs");
  const pageLabel = h("span", { class: "muted" });

  main.append(
    h("h1", {}, "Jobs"),
    filterForm,
    filterError,
    h("div", { class: "actions" }, Object.values(bulkButtons), selectionCount),
    notice,
    h("div", { class: "table-wrap", role: "region", "aria-label": "Jobs table", tabindex: "0" }, table),
    h("div", { class: "pager" }, newer_, older, pageLabel),
  );

  function matches(job) {
    if (filters.status && job.status !== filters.status) return false;
    if (filters.queue && job.queue !== filters.queue) return false;
    if (filters.search && !String(job.name).toLowerCase().includes(filters.search.toLowerCase())) return false;
    return true;
  }

  function belongsHere(job) {
    const page = pages[pages.length - 1];
    if (page.upper && compare(job, page.upper) >= 0) return false;
    if (hasMore && rows.size >= PAGE_SIZE) {
      const last = lastRow();
      if (last && compare(job, last.job) <= 0) return false;
    }
    return true;
  }

  function lastRow() {
    const tr = tbody.lastElementChild;
    return tr && tr.dataset.id ? rows.get(tr.dataset.id) : null;
  }

  function makeRow(job) {
    const box = h("input", { type: "checkbox", "aria-label": `Select ${job.name}`, disabled: !mayCancel });
    box.checked = selected.has(job.id);
    box.addEventListener("change", () => {
      if (box.checked) selected.set(job.id, job.name);
      else selected.delete(job.id);
      showSelection();
    });
    const link = h("a", { href: `#/jobs/${job.id}` }, job.name);
    const cells = {
      queue: h("td"),
      status: h("td"),
      attempts: h("td", { class: "num" }),
      priority: h("td", { class: "num hide-narrow" }),
      worker: h("td", { class: "hide-narrow" }),
      created: h("td", { class: "hide-narrow" }),
      updated: h("td", { class: "hide-narrow" }),
    };
    const tr = h("tr", { "data-id": job.id }, h("td", { class: "select" }, box), h("td", {}, link), Object.values(cells));
    const row = { tr, job: null, cells, box };
    fill(row, job);
    return row;
  }

  function fill(row, job) {
    app.statuses.note(job.status);
    const before = row.job;
    row.job = job;
    const { cells } = row;
    if (!before || before.queue !== job.queue) cells.queue.textContent = job.queue;
    if (!before || before.status !== job.status) {
      cells.status.replaceChildren(statusBadge(job.status));
      if (before) flash(row.tr);
    }
    cells.attempts.textContent = `${job.attempts} / ${job.max_attempts}`;
    cells.priority.textContent = String(job.priority);
    cells.worker.textContent = job.status === "running" && job.worker ? job.worker : "";
    if (!before || before.created_at !== job.created_at) cells.created.replaceChildren(when(job.created_at));
    if (!before || before.updated_at !== job.updated_at) cells.updated.replaceChildren(when(job.updated_at));
  }

  function flash(tr) {
    // The Web Animations API: no forced layout per changed row, no inline style attribute.
    if (!calm.matches) tr.animate(FLASH, { duration: 1200, easing: "ease-out" });
  }

  function insert(job) {
    const row = makeRow(job);
    rows.set(job.id, row);
    let before = null;
    for (const tr of tbody.children) {
      const other = rows.get(tr.dataset.id);
      if (other && compare(job, other.job) > 0) {
        before = tr;
        break;
      }
    }
    tbody.insertBefore(row.tr, before);
    flash(row.tr);
  }

  function remove(id) {
    const row = rows.get(id);
    if (!row) return;
    row.tr.remove();
    rows.delete(id);
  }

  function trim() {
    while (rows.size > PAGE_SIZE) {
      const last = lastRow();
      if (!last) break;
      remove(last.job.id);
      hasMore = true;
      stale = true;
    }
  }

  function showEmpty() {
    if (rows.size === 0 && !tbody.contains(empty)) tbody.append(empty);
    if (rows.size > 0 && tbody.contains(empty)) empty.remove();
  }

  function showSelection() {
    const n = selected.size;
    selectionCount.textContent = n === 0 ? "No job selected" : `${n} job${n === 1 ? "" : "s"} selected`;
    for (const button of Object.values(bulkButtons)) button.disabled = !mayCancel || n === 0;
    const visible = [...rows.values()];
    selectAll.checked = visible.length > 0 && visible.every((row) => selected.has(row.job.id));
  }

  function showPager() {
    newer_.disabled = pages.length === 1;
    older.disabled = !hasMore;
    pageLabel.textContent = `Page ${pages.length}`;
  }

  // ---- loading a page and reconciling it with what is shown
  async function load({ refresh = false } = {}) {
    const mine = ++generation;
    loading = true;
    const page = pages[pages.length - 1];
    const params = { order: "desc", limit: PAGE_SIZE, status: filters.status, queue: filters.queue, search: filters.search, cursor: page.cursor };
    try {
      const { data } = await api("GET", `/api/v1/jobs${query(params)}`);
      if (mine !== generation) return;
      filterError.textContent = "";
      const fresh = new Set(data.jobs.map((job) => job.id));
      for (const id of [...rows.keys()]) if (!fresh.has(id)) remove(id);
      let previous = null;
      for (const job of data.jobs) {
        let row = rows.get(job.id);
        if (row) {
          if (newer(row.job, job)) fill(row, job);
        } else {
          row = makeRow(job);
          rows.set(job.id, row);
          if (refresh) flash(row.tr);
        }
        const wanted = previous ? previous.nextSibling : tbody.firstChild;
        if (wanted !== row.tr) tbody.insertBefore(row.tr, wanted);
        previous = row.tr;
      }
      nextCursor = data.next_cursor;
      hasMore = Boolean(nextCursor);
      stale = false;
    } catch (error) {
      if (mine !== generation) return;
      if (error.status === 422) filterError.textContent = error.details.map((d) => `${d.field}: ${d.reason}`).join(" ") || error.message;
      else notice.textContent = `Could not load jobs: ${error.message}`;
    } finally {
      if (mine === generation) {
        loading = false;
        const pending = buffered;
        buffered = [];
        for (const change of pending) apply(change, false);
        showEmpty();
        showSelection();
        showPager();
      }
    }
  }

  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => load({ refresh: true }), REFRESH_DELAY_MS);
  }

  function apply(change, schedule = true) {
    const row = rows.get(change.id);
    if (change.op === "delete") {
      if (row) {
        remove(change.id);
        if (schedule) refreshSoon();
      }
      return;
    }
    const job = change.data;
    if (!job) return;
    if (row) {
      if (!newer(row.job, job)) return;
      if (matches(job)) fill(row, job);
      else {
        remove(job.id);
        if (schedule) refreshSoon();
      }
      return;
    }
    if (!matches(job) || !belongsHere(job)) return;
    insert(job);
    trim();
    if (schedule && change.op !== "create") refreshSoon();
  }

  function flush() {
    frame = 0;
    const changes = queued;
    queued = [];
    for (const change of changes) apply(change);
    showEmpty();
    showSelection();
    showPager();
  }

  function onChange(event) {
    const change = event.detail;
    if (change.collection !== "jobs") return;
    if (loading) {
      buffered.push(change);
      return;
    }
    queued.push(change);
    if (queued.length > MAX_QUEUED) {
      queued = [];
      load({ refresh: true });
      return;
    }
    if (!frame) frame = requestAnimationFrame(flush);
  }

  function onResync() {
    load({ refresh: true });
  }

  // ---- events
  let typing = 0;
  function applyFilters() {
    filters.status = statusSelect.value;
    filters.queue = queueInput.value.trim();
    filters.search = searchInput.value.trim();
    history.replaceState(null, "", `#/jobs${query(filters)}`);
    pages = [{ cursor: null, upper: null }];
    selected.clear();
    load();
  }
  statusSelect.addEventListener("change", applyFilters);
  for (const input of [queueInput, searchInput]) {
    input.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(applyFilters, 300);
    });
  }
  filterForm.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(typing);
    applyFilters();
  });

  selectAll.addEventListener("change", () => {
    for (const row of rows.values()) {
      row.box.checked = selectAll.checked;
      if (selectAll.checked) selected.set(row.job.id, row.job.name);
      else selected.delete(row.job.id);
    }
    showSelection();
  });

  older.addEventListener("click", async () => {
    if (stale) await load();
    if (!nextCursor) return;
    const last = lastRow();
    pages.push({ cursor: nextCursor, upper: last ? last.job : null });
    await load();
    older.disabled ? newer_.focus() : older.focus();
  });
  newer_.addEventListener("click", async () => {
    if (pages.length === 1) return;
    pages.pop();
    await load();
    newer_.disabled ? older.focus() : newer_.focus();
  });

  async function actOnSelection(action) {
    const words = BULK[action];
    const button = bulkButtons[action];
    const ids = [...selected.keys()];
    const n = ids.length;
    if (!n) return;
    const plural = n === 1 ? "job" : "jobs";
    const ok = await confirmDialog({
      title: `${words.verb} ${n} ${plural}?`,
      text: `This touches ${n} ${plural}: ${words.explain}`,
      confirm: `${words.verb} ${n} ${plural}`,
      back: "Go back",
    });
    if (!ok) {
      button.focus();
      return;
    }
    button.disabled = true;
    notice.textContent = "";
    try {
      const { changed } = await bulkAction(action, ids);
      for (const id of ids) selected.delete(id);
      for (const row of rows.values()) row.box.checked = false;
      notice.textContent =
        changed === n
          ? `${words.done} ${n} ${plural}.`
          : `${words.done} ${changed} of ${n} selected ${plural}; the others are not yours to change or their status does not allow it.`;
    } catch (error) {
      notice.textContent = `Nothing was changed: ${error.message}`;
    }
    showSelection();
    button.disabled ? selectAll.focus() : button.focus();
  }
  for (const action of Object.keys(BULK)) bulkButtons[action].addEventListener("click", () => actOnSelection(action));

  function onStatusAdded() {
    statusOptions();
  }

  app.feed.addEventListener("change", onChange);
  app.feed.addEventListener("resync", onResync);
  app.statuses.addEventListener("added", onStatusAdded);
  app.statuses.learn();
  document.title = "Jobs — Orchestrator console";
  app.feed.ready().then(() => mounted && load());

  return {
    unmount() {
      mounted = false;
      generation += 1;
      clearTimeout(refreshTimer);
      clearTimeout(typing);
      if (frame) cancelAnimationFrame(frame);
      app.feed.removeEventListener("change", onChange);
      app.feed.removeEventListener("resync", onResync);
      app.statuses.removeEventListener("added", onStatusAdded);
    },
  };
}

