// The sign-in form: a browser session (HttpOnly cookie), never a token kept by the page.

import { api } from "./api.js";
import { field, h, showFieldErrors } from "./dom.js";

export function signInView(main, { message, onSignedIn }) {
  const username = field("Username", h("input", { name: "username", autocomplete: "username", autocapitalize: "none", spellcheck: "false" }));
  const password = field("Password", h("input", { name: "password", type: "password", autocomplete: "current-password" }));
  const problem = h("p", { class: "form-error", "aria-live": "assertive" });
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { novalidate: true, class: "panel" }, username.element, password.element, problem, h("div", { class: "actions" }, submit));
  const notice = message ? h("p", { class: "notice", role: "alert" }, message) : null;
  main.append(h("h1", {}, "Sign in"), notice, form);
  username.control.focus();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.textContent = "";
    submit.disabled = true;
    try {
      await api("POST", "/auth/session", {
        body: { username: username.control.value, password: password.control.value },
        signIn: true,
      });
      const { data } = await api("GET", "/api/v1/users/me", { signIn: true });
      onSignedIn(data);
    } catch (error) {
      const rest = showFieldErrors({ username, password }, error);
      if (error.status === 429 || error.status === 503) problem.textContent = tooSoon(error);
      else if (error.status !== 422 || rest.length) problem.textContent = error.message;
      password.control.value = "";
      if (error.status !== 422) username.control.focus();
    } finally {
      submit.disabled = false;
    }
  });
  return {};
}

// 429: this account or this address tried too often; 503: too many sign-ins at once.
function tooSoon(error) {
  const seconds = Number.parseInt((error.headers && error.headers.get("Retry-After")) || "", 10);
  const wait = Number.isFinite(seconds) && seconds > 0 ? duration(seconds) : "a moment";
  return error.status === 429
    ? `Too many sign-in attempts. Try again in ${wait}.`
    : `The server is busy signing people in. Try again in ${wait}.`;
}

function duration(seconds) {
  if (seconds < 60) return seconds === 1 ? "1 second" : `${seconds} seconds`;
  const minutes = Math.ceil(seconds / 60);
  return minutes === 1 ? "1 minute" : `${minutes} minutes`;
}
