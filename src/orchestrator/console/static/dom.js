// Building the page from data: elements made with textContent only, never from HTML strings.

const SVG_NS = "http://www.w3.org/2000/svg";

function applyProps(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.setAttribute("class", value);
    } else if (typeof value !== "string" && typeof value !== "number" && key in el) {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** An HTML element: h("button", {type: "button", onclick: f}, "Save"). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  applyProps(el, props);
  return append(el, children);
}

/** An SVG element (the overview's chart). */
export function s(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value !== undefined && value !== null) el.setAttribute(key, String(value));
  }
  return append(el, children);
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

let ids = 0;
/** A document-unique id for label/aria wiring. */
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** A <time> showing a timestamp in the reader's locale, or an em dash. */
export function when(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const date = new Date(iso);
  return h("time", { datetime: iso }, dateTime.format(date));
}

/** "3 min", "2 h", for ages. */
export function age(iso, now = Date.now()) {
  if (!iso) return "—";
  const seconds = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86400)} d`;
}

export function statusBadge(status) {
  return h("span", { class: `status status-${status}` }, status);
}

/** A labelled form field; `control` gets the id, `error` is where the API's reason goes. */
export function field(labelText, control, { hint } = {}) {
  const id = control.id || uid("field");
  control.id = id;
  const error = h("p", { class: "field-error", id: `${id}-error` });
  control.setAttribute("aria-describedby", error.id);
  return {
    element: h("div", { class: "field" }, h("label", { for: id }, labelText), hint ? h("span", { class: "muted" }, hint) : null, control, error),
    control,
    error,
  };
}

/** Shows each of the API's `details` next to the field it names; returns what matched none. */
export function showFieldErrors(fields, apiError) {
  for (const f of Object.values(fields)) {
    f.error.textContent = "";
    f.control.removeAttribute("aria-invalid");
  }
  const unmatched = [];
  for (const detail of apiError?.details || []) {
    const name = String(detail.field || "").split(".")[0];
    const target = fields[name];
    if (target) {
      target.error.textContent = target.error.textContent ? `${target.error.textContent} ${detail.reason}` : detail.reason;
      target.control.setAttribute("aria-invalid", "true");
    } else {
      unmatched.push(detail);
    }
  }
  const first = Object.values(fields).find((f) => f.control.getAttribute("aria-invalid") === "true");
  if (first) first.control.focus();
  return unmatched;
}

/** A modal confirmation; resolves true when the person confirms. */
export function confirmDialog({ title, text, confirm = "Confirm", back = "Go back", danger = true }) {
  return new Promise((resolve) => {
    const titleId = uid("dialog-title");
    const ok = h("button", { type: "button", class: danger ? "danger" : "" }, confirm);
    const no = h("button", { type: "button", class: "secondary" }, back);
    const dialog = h("dialog", { "aria-labelledby": titleId }, h("h2", { id: titleId }, title), h("p", {}, text), h("div", { class: "actions" }, ok, no));
    const done = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    ok.addEventListener("click", () => done(true));
    no.addEventListener("click", () => done(false));
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      done(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    no.focus();
  });
}
