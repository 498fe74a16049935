// Collaboration tasks: a list kept live by the feed, and edits guarded by If-Match. When
// someone else changed a task first (412), both versions are shown and nothing is overwritten
// until the person chooses.

import { api, can, query } from "./api.js";
import { field, h, showFieldErrors, uid, when } from "./dom.js";
import { newer } from "./live.js";

const PAGE_SIZE = 100;

function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function tasksView(main, app) {
  const rows = new Map(); // id -> {tr, task, cells}
  let nextCursor = null;
  let loading = true; // until the first page is in: changes wait for it
  let mounted = true;
  let buffered = [];
  const mayEdit = can(app.user, "edit-task");

  const notice = h("p", { class: "notice", "aria-live": "polite" });
  const newTask = h("button", { type: "button", disabled: !mayEdit }, "New task");
  const editor = h("div");
  const tbody = h("tbody");
  const empty = h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No tasks yet."));
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show more tasks");
  main.append(
    h("h1", {}, "Tasks"),
    h("div", { class: "actions" }, newTask),
    editor,
    notice,
    h(
      "div",
      { class: "table-wrap", role: "region", "aria-label": "Tasks table", tabindex: "0" },
      h(
        "table",
        {},
        h("caption", { class: "visually-hidden" }, "Tasks, oldest first"),
        h(
          "thead",
          {},
          h("tr", {}, h("th", { scope: "col" }, "Title"), h("th", { scope: "col", class: "hide-narrow" }, "Description"), h("th", { scope: "col", class: "hide-narrow" }, "Updated"), h("th", { scope: "col", class: "hide-narrow" }, "Created by"), h("th", { scope: "col" }, "Actions")),
        ),
        tbody,
      ),
    ),
    h("div", { class: "pager" }, more),
  );

  // ---- the one open form (a new task, or an edit of one)
  let form = null; // {mode, taskId, base, etag, fields, ...}

  function closeForm() {
    form = null;
    editor.replaceChildren();
  }

  function openForm(mode, task = null, etag = null) {
    const title = field("Title", h("input", { name: "title", autocomplete: "off", value: task ? task.title : "" }));
    const description = field("Description", h("textarea", { name: "description" }, task && task.description ? task.description : ""));
    const problem = h("p", { class: "form-error", "aria-live": "polite" });
    const save = h("button", { type: "submit" }, "Save");
    const discard = h("button", { type: "button", class: "secondary" }, "Discard");
    const conflict = h("div");
    const headingId = uid("editor");
    const element = h(
      "form",
      { class: "panel", novalidate: true, "aria-labelledby": headingId },
      h("h2", { id: headingId }, mode === "new" ? "New task" : "Edit task"),
      title.element,
      description.element,
      problem,
      conflict,
      h("div", { class: "actions" }, save, discard),
    );
    form = { mode, taskId: task ? task.id : null, base: task, etag, fields: { title, description }, problem, conflict, save, element, key: idempotencyKey() };
    element.addEventListener("submit", (event) => {
      event.preventDefault();
      submit();
    });
    discard.addEventListener("click", () => {
      closeForm();
      newTask.focus();
    });
    editor.replaceChildren(element);
    title.control.focus();
  }

  function mine() {
    return { title: form.fields.title.control.value, description: form.fields.description.control.value };
  }

  /** The fields this edit changes relative to the version it started from. */
  function changes(values, base) {
    const body = {};
    if (!base || values.title !== base.title) body.title = values.title;
    const description = values.description === "" ? null : values.description;
    if (!base || description !== (base.description ?? null)) body.description = description;
    return body;
  }

  async function submit(values = mine()) {
    const current = form;
    current.problem.textContent = "";
    current.save.disabled = true;
    try {
      if (current.mode === "new") {
        const body = { title: values.title };
        if (values.description) body.description = values.description;
        const { data } = await api("POST", "/api/v1/collab/tasks", { body, headers: { "Idempotency-Key": current.key } });
        upsert(data, true);
        notice.textContent = `Task “${data.title}” created.`;
      } else {
        const body = changes(values, current.base);
        if (Object.keys(body).length === 0) {
          notice.textContent = "Nothing to save: the task already reads like this.";
        } else {
          const { data } = await api("PATCH", `/api/v1/collab/tasks/${current.taskId}`, { body, headers: { "If-Match": current.etag } });
          upsert(data, true);
          notice.textContent = `Task “${data.title}” saved.`;
        }
      }
      closeForm();
      newTask.focus();
    } catch (error) {
      if (form !== current) return;
      if (error.status === 412) await showConflict(current, values, error);
      else if (error.status === 404 && current.mode === "edit") {
        current.conflict.replaceChildren(h("div", { class: "conflict" }, h("p", { role: "alert" }, "This task was deleted by someone else. Save creates it again with your text.")));
        current.mode = "new";
      } else {
        const rest = showFieldErrors(current.fields, error);
        if (error.status !== 422 || rest.length) current.problem.textContent = error.message;
      }
    } finally {
      current.save.disabled = false;
    }
  }

  async function showConflict(current, values, error) {
    let theirs = null;
    let etag = error.headers.get("ETag");
    try {
      const response = await api("GET", `/api/v1/collab/tasks/${current.taskId}`);
      theirs = response.data;
      etag = response.etag;
    } catch (err) {
      if (err.status === 404) {
        current.conflict.replaceChildren(h("div", { class: "conflict" }, h("p", { role: "alert" }, "This task was deleted by someone else. Save creates it again with your text.")));
        current.mode = "new";
        return;
      }
      current.problem.textContent = err.message;
      return;
    }
    upsert(theirs, false);
    notice.textContent = "";
    // From here a save applies to their version: nothing is overwritten without this choice.
    current.base = theirs;
    current.etag = etag;
    const apply = h("button", { type: "button" }, "Apply my edit");
    const drop = h("button", { type: "button", class: "secondary" }, "Discard my edit");
    const version = (label, title, description, extra) => {
      const id = uid("version");
      return h("section", { "aria-labelledby": id }, h("h3", { id }, label), h("dl", { class: "facts" }, h("dt", {}, "Title"), h("dd", {}, title), h("dt", {}, "Description"), h("dd", {}, description || "—"), extra));
    };
    current.conflict.replaceChildren(
      h(
        "div",
        { class: "conflict" },
        h("p", { role: "alert" }, "This task was changed by someone else while you were editing it. Both versions are below: apply your edit over theirs, or discard it."),
        h(
          "div",
          { class: "versions" },
          version("Their version", theirs.title, theirs.description, [h("dt", {}, "Updated"), h("dd", {}, when(theirs.updated_at))]),
          version("Your edit", values.title, values.description, null),
        ),
        h("div", { class: "actions" }, apply, drop),
      ),
    );
    apply.addEventListener("click", () => submit(values));
    drop.addEventListener("click", () => {
      closeForm();
      notice.textContent = "Your edit was discarded; the task shows their version.";
      newTask.focus();
    });
    apply.focus();
  }

  async function startEdit(task) {
    try {
      const { data, etag } = await api("GET", `/api/v1/collab/tasks/${task.id}`);
      upsert(data, false);
      openForm("edit", data, etag);
    } catch (error) {
      notice.textContent = error.status === 404 ? "This task no longer exists." : error.message;
    }
  }

  async function deleteTask(task) {
    notice.textContent = "";
    try {
      const { etag } = await api("GET", `/api/v1/collab/tasks/${task.id}`);
      await api("DELETE", `/api/v1/collab/tasks/${task.id}`, { headers: { "If-Match": etag } });
      removeRow(task.id);
      notice.textContent = `Task “${task.title}” deleted.`;
      newTask.focus();
    } catch (error) {
      notice.textContent = error.status === 404 ? "This task was already deleted." : error.status === 412 ? "Someone else changed this task just now; check it and delete again." : error.message;
    }
  }

  // ---- rows
  function makeRow(task) {
    const edit = h("button", { type: "button", class: "secondary", "aria-label": `Edit ${task.title}`, disabled: !mayEdit }, "Edit");
    const del = h("button", { type: "button", class: "danger", "aria-label": `Delete ${task.title}`, disabled: !mayEdit }, "Delete");
    const cells = { title: h("td"), description: h("td", { class: "hide-narrow" }), updated: h("td", { class: "hide-narrow" }), by: h("td", { class: "hide-narrow" }) };
    const row = { task, cells, edit, del, tr: null };
    edit.addEventListener("click", () => startEdit(row.task));
    del.addEventListener("click", () => deleteTask(row.task));
    row.tr = h("tr", { "data-id": task.id }, cells.title, cells.description, cells.updated, cells.by, h("td", {}, h("div", { class: "actions" }, edit, del)));
    fill(row, task);
    return row;
  }

  function fill(row, task) {
    row.task = task;
    row.cells.title.textContent = task.title;
    row.cells.description.textContent = task.description ? (task.description.length > 120 ? `${task.description.slice(0, 120)}…` : task.description) : "";
    row.cells.updated.replaceChildren(when(task.updated_at));
    row.cells.by.textContent = task.created_by;
    row.edit.setAttribute("aria-label", `Edit ${task.title}`);
    row.del.setAttribute("aria-label", `Delete ${task.title}`);
  }

  function upsert(task, created) {
    const row = rows.get(task.id);
    if (row) {
      if (newer(row.task, task)) fill(row, task);
    } else if (created || !nextCursor) {
      const fresh = makeRow(task);
      rows.set(task.id, fresh);
      tbody.append(fresh.tr);
    }
    showEmpty();
  }

  function removeRow(id) {
    const row = rows.get(id);
    if (row) row.tr.remove();
    rows.delete(id);
    showEmpty();
  }

  function showEmpty() {
    if (rows.size === 0 && !tbody.contains(empty)) tbody.append(empty);
    if (rows.size > 0 && tbody.contains(empty)) empty.remove();
  }

  async function load(cursor = null) {
    loading = true;
    try {
      const { data } = await api("GET", `/api/v1/collab/state/tasks${query({ limit: PAGE_SIZE, cursor })}`);
      if (!cursor) {
        for (const row of rows.values()) row.tr.remove();
        rows.clear();
      }
      for (const task of data.items) {
        const existing = rows.get(task.id);
        if (existing) fill(existing, task);
        else {
          const row = makeRow(task);
          rows.set(task.id, row);
          tbody.append(row.tr);
        }
      }
      nextCursor = data.next_cursor;
      more.hidden = !nextCursor;
    } catch (error) {
      notice.textContent = `Could not load tasks: ${error.message}`;
    } finally {
      loading = false;
      const pending = buffered;
      buffered = [];
      for (const change of pending) apply(change);
      showEmpty();
    }
  }

  function apply(change) {
    if (change.op === "delete") {
      removeRow(change.id);
      if (form && form.taskId === change.id) notice.textContent = "Someone else deleted the task you are editing.";
      return;
    }
    if (!change.data) return;
    upsert(change.data, false);
    if (form && form.taskId === change.id && form.base && change.data.version > form.base.version) {
      notice.textContent = "Someone else changed the task you are editing: saving will show you both versions first.";
    }
  }

  function onChange(event) {
    const change = event.detail;
    if (change.collection !== "tasks") return;
    if (loading) buffered.push(change);
    else apply(change);
  }
  function onResync() {
    load();
  }

  newTask.addEventListener("click", () => openForm("new"));
  more.addEventListener("click", () => load(nextCursor));
  app.feed.addEventListener("change", onChange);
  app.feed.addEventListener("resync", onResync);
  document.title = "Tasks — Orchestrator console";
  app.feed.ready().then(() => mounted && load());
  return {
    unmount() {
      mounted = false;
      app.feed.removeEventListener("change", onChange);
      app.feed.removeEventListener("resync", onResync);
    },
  };
}
