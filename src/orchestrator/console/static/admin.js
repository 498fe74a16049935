// Administration, for admins: accounts (create, role, disable) and API keys (create with the
// key shown once, list, revoke).

import { api } from "./api.js";
import { confirmDialog, field, h, showFieldErrors, when } from "./dom.js";

const ROLES = ["admin", "member", "viewer", "worker"];

export function adminView(main, app) {
  document.title = "Admin — Orchestrator console";
  main.append(h("h1", {}, "Admin"));
  if (!app.user || app.user.role !== "admin") {
    main.append(h("p", { class: "notice" }, "Only admins can see this page."));
    return {};
  }
  const users = usersSection(app);
  const keys = keysSection(app);
  main.append(users.element, keys.element);
  // Accounts changed by anyone (another admin, the CLI) show up live.
  let timer = 0;
  function onChange(event) {
    if (event.detail.collection !== "users" || timer) return;
    timer = setTimeout(() => {
      timer = 0;
      users.load();
    }, 200);
  }
  app.feed.addEventListener("change", onChange);
  app.feed.addEventListener("resync", users.load);
  return {
    unmount() {
      clearTimeout(timer);
      app.feed.removeEventListener("change", onChange);
      app.feed.removeEventListener("resync", users.load);
    },
  };
}

function roleSelect(props, current) {
  const select = h("select", props, ROLES.map((role) => h("option", { value: role }, role)));
  select.value = current;
  return select;
}

function usersSection(app) {
  const notice = h("p", { class: "notice", "aria-live": "polite" });
  const tbody = h("tbody");
  const username = field("Username", h("input", { name: "username", id: "new-username", autocomplete: "off", autocapitalize: "none", spellcheck: "false" }));
  const role = field("Role", roleSelect({ name: "role", id: "new-role" }, "member"));
  const password = field("Password", h("input", { name: "password", id: "new-password", type: "password", autocomplete: "new-password" }), { hint: "8 to 1,024 characters" });
  const problem = h("p", { class: "form-error", "aria-live": "polite" });
  const create = h("button", { type: "submit" }, "Create user");
  const form = h("form", { class: "panel", novalidate: true, "aria-labelledby": "new-user" }, h("h3", { id: "new-user" }, "New user"), username.element, role.element, password.element, problem, h("div", { class: "actions" }, create));
  const element = h(
    "section",
    { "aria-labelledby": "admin-users" },
    h("h2", { id: "admin-users" }, "Users"),
    notice,
    h(
      "div",
      { class: "table-wrap", role: "region", "aria-label": "Users table", tabindex: "0" },
      h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Username"), h("th", { scope: "col" }, "Role"), h("th", { scope: "col" }, "State"), h("th", { scope: "col", class: "hide-narrow" }, "Created"), h("th", { scope: "col" }, "Actions"))), tbody),
    ),
    form,
  );

  async function patch(user, body, done) {
    notice.textContent = "";
    try {
      await api("PATCH", `/api/v1/users/${encodeURIComponent(user.username)}`, { body });
      notice.textContent = done;
      await load();
    } catch (error) {
      notice.textContent = `${user.username}: ${error.message}`;
    }
  }

  function row(user) {
    const self = user.username === app.user.username;
    const select = roleSelect({ "aria-label": `Role of ${user.username}`, disabled: self }, user.role);
    const apply = h("button", { type: "button", class: "secondary", "aria-label": `Change role of ${user.username}`, disabled: self }, "Change role");
    const toggle = h("button", { type: "button", class: user.disabled ? "secondary" : "danger", disabled: self }, `${user.disabled ? "Enable" : "Disable"} ${user.username}`);
    apply.addEventListener("click", () => patch(user, { role: select.value }, `${user.username} is now ${select.value}.`));
    toggle.addEventListener("click", async () => {
      if (!user.disabled) {
        const ok = await confirmDialog({ title: `Disable ${user.username}?`, text: "Their sessions, tokens and API keys stop working at once.", confirm: `Disable ${user.username}`, back: "Go back" });
        if (!ok) return toggle.focus();
      }
      await patch(user, { disabled: !user.disabled }, `${user.username} is ${user.disabled ? "enabled" : "disabled"}.`);
    });
    return h("tr", {}, h("th", { scope: "row" }, user.username, self ? " (you)" : ""), h("td", {}, select), h("td", {}, user.disabled ? "disabled" : "active"), h("td", { class: "hide-narrow" }, when(user.created_at)), h("td", {}, h("div", { class: "actions" }, apply, toggle)));
  }

  async function load() {
    try {
      const { data } = await api("GET", "/api/v1/users");
      tbody.replaceChildren(...data.users.map(row));
    } catch (error) {
      notice.textContent = `Could not load users: ${error.message}`;
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    create.disabled = true;
    try {
      const body = { username: username.control.value, role: role.control.value, password: password.control.value };
      await api("POST", "/api/v1/users", { body });
      notice.textContent = `User ${body.username} created.`;
      form.reset();
      showFieldErrors({ username, role, password }, null);
      await load();
    } catch (error) {
      const rest = showFieldErrors({ username, role, password }, error);
      if (error.status !== 422 || rest.length) problem.textContent = error.message;
    } finally {
      create.disabled = false;
    }
  });

  load();
  return { element, load };
}

function keysSection(app) {
  const notice = h("p", { class: "notice", "aria-live": "polite" });
  const tbody = h("tbody");
  const reveal = h("div");
  const name = field("Name", h("input", { name: "name", id: "key-name", autocomplete: "off" }));
  const owner = field("For user", h("input", { name: "username", id: "key-username", autocomplete: "off", autocapitalize: "none", spellcheck: "false", placeholder: app.user.username }), { hint: "Empty: yourself" });
  const days = field("Expires in days", h("input", { name: "expires_in_days", id: "key-days", type: "number", inputmode: "numeric", value: "90" }), { hint: "1 to 730" });
  const readOnly = h("input", { type: "checkbox", name: "read_only", id: "key-read-only" });
  const problem = h("p", { class: "form-error", "aria-live": "polite" });
  const create = h("button", { type: "submit" }, "Create key");
  const form = h(
    "form",
    { class: "panel", novalidate: true, "aria-labelledby": "new-key" },
    h("h3", { id: "new-key" }, "New API key"),
    name.element,
    owner.element,
    days.element,
    h("div", { class: "field" }, h("label", { class: "check", for: readOnly.id }, readOnly, "Read only (GET and the feeds only)")),
    problem,
    h("div", { class: "actions" }, create),
  );
  const element = h(
    "section",
    { "aria-labelledby": "admin-keys" },
    h("h2", { id: "admin-keys" }, "API keys"),
    notice,
    reveal,
    h(
      "div",
      { class: "table-wrap", role: "region", "aria-label": "API keys table", tabindex: "0" },
      h(
        "table",
        {},
        h(
          "thead",
          {},
          h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "User"), h("th", { scope: "col", class: "hide-narrow" }, "Prefix"), h("th", { scope: "col" }, "Access"), h("th", { scope: "col", class: "hide-narrow" }, "Expires"), h("th", { scope: "col", class: "hide-narrow" }, "Last used"), h("th", { scope: "col" }, "Actions")),
        ),
        tbody,
      ),
    ),
    form,
  );

  function showKey(created) {
    const input = h("input", { type: "text", readonly: true, value: created.key, id: "new-key-value", "aria-describedby": "new-key-help" });
    const copy = h("button", { type: "button" }, "Copy key");
    const done = h("button", { type: "button", class: "secondary" }, "Done");
    const copied = h("span", { class: "muted", "aria-live": "polite" });
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(created.key);
        copied.textContent = "Copied.";
      } catch {
        input.select();
        copied.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
      }
    });
    done.addEventListener("click", () => {
      reveal.replaceChildren();
      name.control.focus();
    });
    reveal.replaceChildren(
      h(
        "div",
        { class: "panel" },
        h("h3", {}, `Key “${created.name}” for ${created.username}`),
        h("p", { id: "new-key-help" }, "Copy the key now: it is shown this once and cannot be read again."),
        h("div", { class: "secret" }, h("label", { for: input.id, class: "visually-hidden" }, "The new key"), input, copy, done, copied),
      ),
    );
    copy.focus();
  }

  function row(key) {
    const revoke = h("button", { type: "button", class: "danger", "aria-label": `Revoke ${key.name}` }, "Revoke");
    revoke.addEventListener("click", async () => {
      const ok = await confirmDialog({ title: `Revoke “${key.name}”?`, text: `Clients using this key of ${key.username} are refused from now on.`, confirm: "Revoke the key", back: "Go back" });
      if (!ok) return revoke.focus();
      try {
        await api("DELETE", `/api/v1/api-keys/${key.id}`);
        notice.textContent = `Key “${key.name}” revoked.`;
        await load();
      } catch (error) {
        notice.textContent = error.message;
      }
    });
    return h(
      "tr",
      {},
      h("th", { scope: "row" }, key.name),
      h("td", {}, key.username),
      h("td", { class: "hide-narrow" }, h("code", {}, key.prefix || "")),
      h("td", {}, key.read_only ? "read only" : "read and write"),
      h("td", { class: "hide-narrow" }, when(key.expires_at)),
      h("td", { class: "hide-narrow" }, when(key.last_used_at)),
      h("td", {}, revoke),
    );
  }

  async function load() {
    try {
      const { data } = await api("GET", "/api/v1/api-keys");
      const keys = data.items || data.api_keys || data.keys || [];
      tbody.replaceChildren(...(keys.length ? keys.map(row) : [h("tr", {}, h("td", { colspan: "7", class: "muted" }, "No API keys."))]));
    } catch (error) {
      notice.textContent = error.status === 404 ? "This server does not offer API keys." : `Could not load API keys: ${error.message}`;
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    create.disabled = true;
    try {
      const body = { name: name.control.value, read_only: readOnly.checked };
      const daysValue = days.control.value.trim();
      body.expires_in_days = daysValue === "" ? daysValue : Number(daysValue);
      if (owner.control.value.trim()) body.username = owner.control.value.trim();
      const { data } = await api("POST", "/api/v1/api-keys", { body });
      showFieldErrors({ name, username: owner, expires_in_days: days }, null);
      form.reset();
      showKey(data);
      await load();
    } catch (error) {
      const rest = showFieldErrors({ name, username: owner, expires_in_days: days }, error);
      if (error.status !== 422 || rest.length) problem.textContent = error.message;
    } finally {
      create.disabled = false;
    }
  });

  load();
  return { element, load };
}


