// Job statuses: the six this service has (`waiting`: for the job's parents), and any other the
// API reports (a new status shows up in the queue counts, in a listed job or on the feed, and
// from then on in every view).

import { api } from "./api.js";

export const BASE_STATUSES = ["waiting", "pending", "running", "succeeded", "failed", "cancelled"];
// Where a status the console knows of sits among the others; any other goes last, by name.
const ORDER = BASE_STATUSES;

function rank(status) {
  const at = ORDER.indexOf(status);
  return at === -1 ? ORDER.length : at;
}

/** Events: "added" when a status not seen before is reported. */
export class Statuses extends EventTarget {
  constructor() {
    super();
    this.known = new Set(BASE_STATUSES);
    this.queuesAsked = null;
  }

  /** Every known status, in lifecycle order. */
  list() {
    return [...this.known].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
  }

  note(status) {
    if (typeof status !== "string" || !status || this.known.has(status)) return;
    this.known.add(status);
    this.dispatchEvent(new CustomEvent("added", { detail: status }));
  }

  /** Learns the statuses the queue counts name (once per page; 404 where there are none). */
  noteQueues(items) {
    for (const queue of items || []) for (const status of Object.keys(queue.counts || {})) this.note(status);
  }

  learn() {
    if (!this.queuesAsked) {
      this.queuesAsked = api("GET", "/api/v1/queues").then(
        ({ data }) => this.noteQueues(data && data.items),
        () => undefined,
      );
    }
    return this.queuesAsked;
  }
}
