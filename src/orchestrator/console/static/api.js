// The public HTTP API, with the browser session's cookie and its CSRF token.

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** Events: "session-ended" when the server no longer accepts the session. */
export const session = new EventTarget();

export class ApiError extends Error {
  constructor(status, body, headers) {
    const envelope = body && body.error ? body.error : null;
    super(envelope ? envelope.message : `HTTP ${status}`);
    this.status = status;
    this.envelope = envelope;
    this.details = envelope && Array.isArray(envelope.details) ? envelope.details : [];
    this.headers = headers;
  }
}

function readCookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

/**
 * One API call. Resolves to {status, data, etag, headers}; rejects with ApiError for any
 * non-2xx. A 401 outside sign-in means the session ended (expired, revoked or signed out
 * elsewhere): listeners of `session` send the person back to the sign-in form.
 */
export async function api(method, path, { body, headers = {}, signIn = false } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json", ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  if (UNSAFE.has(method)) {
    const csrf = readCookie("orch_csrf");
    if (csrf) init.headers["X-CSRF-Token"] = csrf;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, { error: { message: "The service cannot be reached; try again in a moment." } }, new Headers());
  }
  const text = response.status === 204 ? "" : await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data, response.headers);
    if (response.status === 401 && !signIn) session.dispatchEvent(new CustomEvent("session-ended"));
    throw error;
  }
  return { status: response.status, data, etag: response.headers.get("ETag"), headers: response.headers };
}

export const get = (path) => api("GET", path);

/** Query string from an object, skipping empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** What a person may do, from their role (the server checks every call anyway). */
export function can(user, action, resource) {
  if (!user) return false;
  if (user.role === "admin") return true;
  if (user.role !== "member") return false;
  if (action === "delete-job" || action === "retry-job") return resource && resource.created_by === user.username;
  // Without a job (a selection of rows), the server refuses each one not theirs.
  if (action === "cancel-job") return !resource || resource.created_by === user.username;
  return action === "edit-task";
}
