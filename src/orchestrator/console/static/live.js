// The change feed over Server-Sent Events, authenticated by the session cookie.
//
// EventSource reconnects by itself and sends Last-Event-ID (the last revision it saw), so a
// dropped connection or a restarted server resumes with no gap. When the browser gives up (the
// server answered something other than a stream), we reconnect ourselves with `since`.
// Changes at or below the revision already delivered are dropped, so none is applied twice.

const MAX_BACKOFF_MS = 15000;

export class Feed extends EventTarget {
  /** `job`: follow that job alone (collections jobs and job_logs only). */
  constructor(collections, { job = null } = {}) {
    super();
    this.collections = collections;
    this.job = job;
    this.revision = null;
    this.source = null;
    this.state = "off";
    this.attempts = 0;
    this.timer = null;
    // Settles at the first `subscribed`: data loaded over HTTP after it misses no change.
    this.subscribed = new Promise((resolve) => {
      this.markSubscribed = resolve;
    });
  }

  /** Resolves once the feed has subscribed, or after `ms` when it cannot (data shows anyway). */
  ready(ms = 2000) {
    return Promise.race([this.subscribed, new Promise((resolve) => setTimeout(resolve, ms))]);
  }

  start() {
    this.stop();
    const params = new URLSearchParams({ collections: this.collections.join(",") });
    if (this.job !== null) params.set("job", this.job);
    if (this.revision !== null) params.set("since", String(this.revision));
    const source = new EventSource(`/api/v1/changes?${params}`, { withCredentials: true });
    this.source = source;
    source.addEventListener("open", () => {
      this.attempts = 0;
      this.setState("live");
    });
    source.addEventListener("subscribed", (event) => {
      const frame = JSON.parse(event.data);
      if (this.revision === null && typeof frame.revision === "number") this.revision = frame.revision;
      this.markSubscribed();
      this.setState("live");
    });
    source.addEventListener("message", (event) => {
      const change = JSON.parse(event.data);
      if (this.revision !== null && change.revision <= this.revision) return;
      this.revision = change.revision;
      this.dispatchEvent(new CustomEvent("change", { detail: change }));
    });
    source.addEventListener("resync_required", (event) => {
      // The log no longer holds what we missed: reload the data, then carry on live.
      const frame = JSON.parse(event.data);
      this.revision = frame.revision;
      this.dispatchEvent(new CustomEvent("resync", { detail: frame }));
    });
    source.addEventListener("error", () => {
      if (source !== this.source) return;
      if (source.readyState === EventSource.CLOSED) {
        this.source = null;
        this.setState("reconnecting");
        this.dispatchEvent(new CustomEvent("closed"));
        this.retryLater();
      } else {
        this.setState("reconnecting");
      }
    });
  }

  retryLater() {
    clearTimeout(this.timer);
    this.attempts += 1;
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(this.attempts, 5));
    this.timer = setTimeout(() => this.start(), delay);
  }

  stop() {
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    this.source = null;
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }
}

/** Applies feed changes to data loaded over HTTP without letting an older body win. */
export function newer(current, incoming) {
  if (!current) return true;
  return typeof incoming.version !== "number" || typeof current.version !== "number" || incoming.version >= current.version;
}
