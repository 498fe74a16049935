// The console's shell: who is signed in, the live indicator, navigation between views.

import { api, session } from "./api.js";
import { clear, h } from "./dom.js";
import { Feed } from "./live.js";
import { signInView } from "./signin.js";
import { overviewView } from "./overview.js";
import { jobsView } from "./jobs.js";
import { jobView } from "./job.js";
import { tasksView } from "./tasks.js";
import { adminView } from "./admin.js";
import { Statuses } from "./statuses.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const navAdmin = document.getElementById("nav-admin");
const live = document.getElementById("live");
const who = document.getElementById("who");
const signOut = document.getElementById("sign-out");

const LIVE_TEXT = {
  off: "Not connected",
  live: "Live",
  reconnecting: "Reconnecting…",
  reload: "Reload needed: the service runs a newer console",
};
const HISTORY_JOBS = 500;
const HISTORY_ENTRIES = 100;

/** What every view shares: the user, the feed, and each job's changes as the feed saw them. */
const app = {
  user: null,
  feed: null,
  history: new Map(),
  statuses: new Statuses(),
  view: null,
  navigate(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
};

function remember(change) {
  if (change.collection !== "jobs") return;
  if (change.data) app.statuses.note(change.data.status);
  let entries = app.history.get(change.id);
  if (!entries) {
    if (app.history.size >= HISTORY_JOBS) app.history.delete(app.history.keys().next().value);
    entries = [];
    app.history.set(change.id, entries);
  }
  entries.push({ revision: change.revision, op: change.op, data: change.data, seen: new Date().toISOString() });
  if (entries.length > HISTORY_ENTRIES) entries.shift();
}

let version = null;
let outdated = false;

function showLive(state) {
  if (outdated) state = "reload";
  live.dataset.state = state;
  live.replaceChildren(LIVE_TEXT[state] || state);
  if (state === "reload") {
    const reload = h("button", { type: "button", class: "secondary" }, "Reload");
    reload.addEventListener("click", () => location.reload());
    live.append(" ", reload);
  }
}

/** Whether the server still serves the console this page runs (after a restart it may not). */
async function checkVersion() {
  try {
    const response = await fetch("/console/version.json", { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) return;
    const { version: served } = await response.json();
    if (version === null) version = served;
    else if (served !== version) {
      outdated = true;
      showLive("reload");
    }
  } catch {
    /* unreachable now: the feed's own state says so */
  }
}

function startFeed() {
  // Admins also follow accounts (the feed refuses `users` to anyone else).
  const collections = ["jobs", "tasks", "queues"];
  if (app.user && app.user.role === "admin") collections.push("users");
  app.feed = new Feed(collections);
  app.feed.addEventListener("state", (event) => {
    showLive(event.detail);
    if (event.detail === "live") checkVersion();
  });
  app.feed.addEventListener("change", (event) => remember(event.detail));
  app.feed.addEventListener("closed", async () => {
    // The stream was refused: a 401 here means the session is over (api() reports it).
    try {
      const { data } = await api("GET", "/api/v1/users/me");
      if (app.user && data.role !== app.user.role) {
        // The role changed (an admin no longer follows accounts): start again as the new role.
        app.feed.stop();
        app.feed = null;
        signedIn(data);
      }
    } catch {
      /* reported by api() when it is a 401; otherwise the feed retries */
    }
  });
  app.feed.start();
}

function signedIn(user) {
  app.user = user;
  who.textContent = `${user.username} (${user.role})`;
  nav.hidden = false;
  navAdmin.hidden = user.role !== "admin";
  signOut.hidden = false;
  if (!app.feed) startFeed();
  if (!location.hash || location.hash === "#" || location.hash === "#/signin") app.navigate("#/overview");
  else route();
}

function signedOut(message) {
  if (app.view && app.view.unmount) app.view.unmount();
  app.view = null;
  if (app.feed) app.feed.stop();
  app.feed = null;
  app.user = null;
  app.history.clear();
  app.statuses = new Statuses();
  showLive("off");
  who.textContent = "";
  nav.hidden = true;
  signOut.hidden = true;
  clear(main);
  document.title = "Sign in — Orchestrator console";
  // Signed in through the form, the focus moves to the first page's heading (it is announced).
  const fromForm = (user) => {
    routed = true;
    signedIn(user);
  };
  app.view = signInView(main, { message, onSignedIn: fromForm });
}

const ROUTES = [
  [/^#\/overview$/, () => overviewView],
  [/^#\/jobs(\?.*)?$/, () => jobsView],
  [/^#\/jobs\/([0-9a-fA-F-]{36})$/, () => jobView],
  [/^#\/tasks$/, () => tasksView],
  [/^#\/admin$/, () => adminView],
];

function route() {
  if (!app.user) return;
  const hash = location.hash || "#/overview";
  let view = null;
  let match = null;
  for (const [pattern, pick] of ROUTES) {
    match = hash.match(pattern);
    if (match) {
      view = pick();
      break;
    }
  }
  if (app.view && app.view.unmount) app.view.unmount();
  clear(main);
  for (const link of nav.querySelectorAll("a")) {
    const target = link.getAttribute("href");
    const current = hash === target || hash.startsWith(`${target}/`) || hash.startsWith(`${target}?`);
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!view) {
    main.append(h("h1", { tabindex: "-1" }, "Not found"), h("p", {}, "There is no such page. ", h("a", { href: "#/overview" }, "Go to the overview")));
    app.view = null;
  } else {
    app.view = view(main, app, match);
  }
  // After a navigation, focus goes to the new page's heading, so screen readers announce it.
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    if (routed) heading.focus();
  }
  routed = true;
}
let routed = false;

session.addEventListener("session-ended", () => {
  if (app.user) signedOut("Your session has ended. Sign in again to continue.");
});

signOut.addEventListener("click", async () => {
  signOut.disabled = true;
  try {
    await api("POST", "/auth/logout", { signIn: true });
  } catch {
    /* the session is gone either way */
  } finally {
    signOut.disabled = false;
  }
  signedOut("You have signed out.");
});

document.getElementById("skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

window.addEventListener("hashchange", route);

async function boot() {
  checkVersion();
  try {
    const { data } = await api("GET", "/api/v1/users/me", { signIn: true });
    signedIn(data);
  } catch (error) {
    signedOut(error.status === 401 ? "" : error.message);
  }
  // The first view answers from here (bench/console.py reads it).
  performance.mark("console:ready");
}

boot();
