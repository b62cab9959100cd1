// Shared state: the caller's config and the live set of open alerts (fed by SSE).
import { ApiError, api, openAlertStream, qs } from "./api.js";

export const state = {
  config: null, // GET /v1/dashboard/config
  session: null, // the signed-in user's session (POST /v1/auth/login), null with a token
  teams: [], // GET /v1/teams
  names: new Map(), // specialist id -> name (filled by views)
};

const listeners = new Set();
export const alerts = {
  open: [], // open (firing) alerts
  silences: [],
  available: null, // null unknown, true, false (notify down)
  streamState: "off",
  subscribe(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
  emit(detail) {
    for (const fn of listeners) fn(detail);
  },
  bySpecialist(id) {
    return this.open.filter((a) => a.specialist_id === id);
  },
  silencedUntil(a) {
    const now = Date.now();
    let until = null;
    for (const s of this.silences) {
      if ((s.specialist_id && s.specialist_id !== a.specialist_id) || (s.kpi && s.kpi !== a.kpi)) continue;
      // A silence mutes the team it was set in (notify); only a KPI-wide one spans teams.
      const orgWide = !s.specialist_id && !s.team_id;
      if (!orgWide && (s.team_id ?? null) !== (a.team_id ?? null)) continue;
      const u = Date.parse(s.until);
      if (u > now && (until === null || u > until)) until = u;
    }
    return until === null ? null : new Date(until).toISOString();
  },
};

let refreshTimer = null;
export async function refreshAlerts() {
  try {
    const [open, silences] = await Promise.all([
      api(`/v1/dashboard/notify/alerts${qs({ state: "open", limit: 1000 })}`),
      api(`/v1/dashboard/notify/silences`),
    ]);
    alerts.open = open.items;
    alerts.silences = silences.items;
    alerts.available = true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    alerts.available = false;
  }
  alerts.emit({ type: "refresh" });
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refreshAlerts, 300);
}

let stopStream = null;
let pollTimer = null;
export function startAlerts() {
  stopAlerts();
  refreshAlerts();
  stopStream = openAlertStream(
    (event, data) => {
      // "reset": too far behind for a replay; the refresh below is the whole answer.
      if (event !== "reset") alerts.emit({ type: "event", event: data });
      scheduleRefresh();
    },
    (s) => {
      const was = alerts.streamState;
      alerts.streamState = s;
      if (s === "on" && was !== "on") scheduleRefresh();
      if (s === "down") alerts.available = false;
      alerts.emit({ type: "stream", state: s });
    },
  );
  // Belt and braces: a missed stream event is corrected within a minute.
  pollTimer = setInterval(refreshAlerts, 60000);
}
export function stopAlerts() {
  if (stopStream) stopStream();
  stopStream = null;
  clearInterval(pollTimer);
}
