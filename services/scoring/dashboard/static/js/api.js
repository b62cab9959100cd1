// HTTP helpers: the session cookie (with its CSRF token) or a bearer token from
// sessionStorage, JSON errors, downloads, SSE over fetch.
const TOKEN_KEY = "kpi.token";
const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

export class ApiError extends Error {
  constructor(status, detail, retryAfter = null, body = null) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
    this.retryAfter = retryAfter; // seconds, from a 429's Retry-After
    this.body = body; // the whole error answer
  }
  // Per-field errors ({loc, msg}): FastAPI's detail list, or a problem+json `errors` list.
  get fieldErrors() {
    if (Array.isArray(this.detail)) return this.detail;
    return Array.isArray(this.body?.errors) ? this.body.errors : [];
  }
  // A route that does not exist (yet): FastAPI answers {"detail": "Not Found"}.
  get routeMissing() {
    return this.status === 404 && this.detail === "Not Found";
  }
  get unavailable() {
    return this.status === 503 || this.status === 502 || this.status === 0;
  }
}

// Who a request speaks for changes at every sign-in and sign-out: a late 401 to a request of
// an earlier one must not sign out the current one.
let epoch = 0;
export const token = () => sessionStorage.getItem(TOKEN_KEY);
export const setToken = (t) => {
  epoch += 1;
  sessionStorage.setItem(TOKEN_KEY, t);
};
export const clearToken = () => {
  epoch += 1;
  sessionStorage.removeItem(TOKEN_KEY);
};
// The session's CSRF token: in memory only (GET /v1/auth/session gives it again on reload).
let csrf = null;
export const setCsrf = (value) => {
  epoch += 1;
  csrf = value;
};
export const signedInWithSession = () => !token() && csrf !== null;

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

function headers(extra = {}, method = "GET") {
  const t = token();
  const out = { ...(t ? { Authorization: `Bearer ${t}` } : {}), ...extra };
  if (!t && csrf && UNSAFE.has(method)) out["X-CSRF-Token"] = csrf;
  return out;
}

export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : "";
}

// `body` is sent as JSON, unless `contentType` is given: then it is sent as it is (a CSV file).
// `quiet`: a 401 is the caller's to handle (signing in, asking who is signed in).
export async function api(path, { method = "GET", body, signal, contentType, quiet = false } = {}) {
  const used = epoch;
  const type = contentType ?? (body !== undefined ? "application/json" : null);
  let res;
  try {
    res = await fetch(path, {
      method,
      signal,
      credentials: "same-origin",
      headers: headers(type ? { "Content-Type": type } : {}, method),
      body: body === undefined || contentType ? body : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network error");
  }
  if (res.status === 401 && !quiet) {
    // A late answer to a request made as someone earlier must not sign out the current one.
    if (used === epoch) onUnauthorized();
    throw new ApiError(401, "unauthorized");
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) {
    const after = Number(res.headers.get("retry-after")) || null;
    throw new ApiError(res.status, data && data.detail !== undefined ? data.detail : data, after, data);
  }
  return data;
}

// Fetch with the token and hand the body to the browser as a file download.
export async function download(path, fallbackName) {
  const res = await fetch(path, { headers: headers(), credentials: "same-origin" });
  if (!res.ok) {
    let detail = res.statusText;
    try {
      detail = (await res.json()).detail;
    } catch {}
    throw new ApiError(res.status, detail);
  }
  const blob = await res.blob();
  saveBlob(blob, attachmentName(res.headers.get("content-disposition") || "", fallbackName));
}

// The file name a Content-Disposition header gives: RFC 6266's UTF-8 filename* when present
// (a CJK team id), else the plain filename, which is only its ASCII fallback.
export function attachmentName(cd, fallbackName) {
  const star = /filename\*\s*=\s*UTF-8''([^;\s]+)/i.exec(cd);
  if (star) {
    try {
      return decodeURIComponent(star[1]);
    } catch {}
  }
  const plain = /filename\s*=\s*(?:"([^"]*)"|([^;\s]+))/i.exec(cd);
  return plain ? plain[1] ?? plain[2] : fallbackName;
}

export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// Server-sent events read with fetch (EventSource cannot send the Authorization header).
// Reconnects by itself; onState("on" | "down") reports whether the stream is live.
export function openAlertStream(onEvent, onState) {
  let stopped = false;
  let controller = null;
  // The last `id:` seen (id-only blocks too): sent as Last-Event-ID on reconnect so notify
  // replays what the dashboard missed instead of it waiting for the next poll.
  let lastId = null;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  async function loop() {
    while (!stopped) {
      controller = new AbortController();
      try {
        const res = await fetch("/v1/dashboard/notify/alerts/stream", {
          headers: headers(
            lastId === null
              ? { Accept: "text/event-stream" }
              : { Accept: "text/event-stream", "Last-Event-ID": lastId },
          ),
          signal: controller.signal,
          credentials: "same-origin",
        });
        if (res.status === 401) {
          if (!stopped) onUnauthorized();
          return;
        }
        if (!res.ok || !res.body) {
          // 429 (this token's stream limit) and 503 (server full) say when to come back.
          const after = Number(res.headers.get("retry-after"));
          onState("down");
          await sleep(after > 0 ? Math.min(after, 60) * 1000 : 5000);
          continue;
        }
        onState("on");
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          let idx;
          while ((idx = buf.search(/\r?\n\r?\n/)) >= 0) {
            const block = buf.slice(0, idx);
            buf = buf.slice(idx).replace(/^\r?\n\r?\n/, "");
            let event = "message";
            const data = [];
            for (const line of block.split(/\r?\n/)) {
              if (line.startsWith("event:")) event = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
              else if (line.startsWith("id:")) lastId = line.slice(3).trim();
            }
            if (data.length) {
              try {
                onEvent(event, JSON.parse(data.join("\n")));
              } catch {}
            }
          }
        }
        if (!stopped) onState("down");
      } catch (err) {
        if (stopped) return;
        onState("down");
      }
      await sleep(3000);
    }
  }
  loop();
  return () => {
    stopped = true;
    if (controller) controller.abort();
  };
}
