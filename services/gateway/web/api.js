// The gateway's JSON-RPC 2.0, the signed-in session, and errors in words.

const TOKEN_KEY = "cocreate.token";

export const M = {
  listProducts: "cocreate.ideas.v1.IdeaService.ListProducts",
  getProduct: "cocreate.ideas.v1.IdeaService.GetProduct",
  listIdeas: "cocreate.ideas.v1.IdeaService.ListIdeas",
  getIdea: "cocreate.ideas.v1.IdeaService.GetIdea",
  similar: "cocreate.ideas.v1.IdeaService.FindSimilarIdeas",
  submit: "cocreate.ideas.v1.IdeaService.SubmitIdea",
  listComments: "cocreate.ideas.v1.IdeaService.ListComments",
  addComment: "cocreate.ideas.v1.IdeaService.AddComment",
  history: "cocreate.ideas.v1.IdeaService.ListIdeaHistory",
  exportIdeas: "cocreate.ideas.v1.IdeaService.ExportIdeas",
  changeStatus: "cocreate.ideas.v1.IdeaService.ChangeIdeaStatus",
  merge: "cocreate.ideas.v1.IdeaService.MergeIdeas",
  hide: "cocreate.ideas.v1.IdeaService.HideIdea",
  unhide: "cocreate.ideas.v1.IdeaService.UnhideIdea",
  reported: "cocreate.ideas.v1.IdeaService.ListReportedIdeas",
  report: "cocreate.ideas.v1.IdeaService.ReportIdea",
  cast: "cocreate.votes.v1.VoteService.CastVote",
  retract: "cocreate.votes.v1.VoteService.RetractVote",
  myVotes: "cocreate.votes.v1.VoteService.ListMyVotes",
  weightPolicy: "cocreate.votes.v1.VoteService.GetWeightPolicy",
  updateWeightPolicy: "cocreate.votes.v1.VoteService.UpdateWeightPolicy",
  account: "cocreate.rewards.v1.RewardsService.GetAccount",
  entries: "cocreate.rewards.v1.RewardsService.ListEntries",
  catalogue: "cocreate.rewards.v1.RewardsService.ListCatalogueItems",
  redeem: "cocreate.rewards.v1.RewardsService.RedeemItem",
  redemptions: "cocreate.rewards.v1.RewardsService.ListRedemptions",
  notifications: "cocreate.votes.v1.NotificationService.ListNotifications",
  markRead: "cocreate.votes.v1.NotificationService.MarkNotificationsRead",
  watch: "cocreate.votes.v1.NotificationService.WatchNotifications",
  iterations: "cocreate.ideas.v1.ReleaseService.ListIterations",
  createIteration: "cocreate.ideas.v1.ReleaseService.CreateIteration",
  iterationIdeas: "cocreate.ideas.v1.ReleaseService.ListIterationIdeas",
  plan: "cocreate.ideas.v1.ReleaseService.PlanIdea",
  markDone: "cocreate.ideas.v1.ReleaseService.MarkIdeaDone",
  cut: "cocreate.ideas.v1.ReleaseService.CutRelease",
  releases: "cocreate.ideas.v1.ReleaseService.ListReleases",
  notes: "cocreate.ideas.v1.ReleaseService.GetReleaseNotes",
};

// A failed call: `code` is the gRPC status name (or NETWORK, HTTP), `message`
// the server's words, `violations` the fields it named.
export class ApiError extends Error {
  constructor(code, message, data) {
    super(message);
    this.code = code;
    this.data = data || {};
    this.violations = this.data.fieldViolations || [];
  }

  // ErrorInfo metadata from google.rpc details, if any.
  info() {
    for (const detail of this.data.details || []) {
      if (detail.metadata) return detail.metadata;
    }
    return {};
  }
}

const JSONRPC_CODES = {
  "-32700": "INVALID_ARGUMENT",
  "-32600": "INVALID_ARGUMENT",
  "-32601": "UNIMPLEMENTED",
  "-32602": "INVALID_ARGUMENT",
  "-32603": "INTERNAL",
};

// --- the session -----------------------------------------------------------

function decodeClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const text = new TextDecoder().decode(
      Uint8Array.from(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")),
        (c) => c.charCodeAt(0)));
    return JSON.parse(text);
  } catch (e) {
    return null;
  }
}

// Who the page acts as. The claims are read only to show the name and offer the
// role's tools; every service verifies the token itself.
export function session() {
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) return null;
  const claims = decodeClaims(token);
  if (!claims || !claims.sub || (claims.exp && claims.exp * 1000 < Date.now())) {
    localStorage.removeItem(TOKEN_KEY);
    return null;
  }
  const role = claims.role || "member";
  return {token, member: claims.sub, role, staff: role === "pm" || role === "admin"};
}

export function signIn(token) {
  if (!decodeClaims(token)) throw new ApiError("INVALID_ARGUMENT", "not a JSON Web Token");
  localStorage.setItem(TOKEN_KEY, token);
}

export function signOut() {
  localStorage.removeItem(TOKEN_KEY);
}

// A token handed over by the community's sign-in in the URL's fragment
// (#token=<jwt>): kept, then removed from the address bar and history.
export function takeTokenFromFragment() {
  const match = /^#token=([A-Za-z0-9._-]+)(?:&next=(.*))?$/.exec(location.hash);
  if (!match) return false;
  signIn(match[1]);
  const next = match[2] ? decodeURIComponent(match[2]) : "#/";
  history.replaceState(null, "", location.pathname + location.search + next);
  return true;
}

// --- calls -----------------------------------------------------------------

function headers(withToken) {
  const sent = {"Content-Type": "application/json"};
  const s = session();
  if (withToken && s) sent.Authorization = "Bearer " + s.token;
  return sent;
}

function toError(error) {
  const data = error.data || {};
  const code = data.grpcStatus || JSONRPC_CODES[String(error.code)] || "UNKNOWN";
  return new ApiError(code, data.message || error.message || code, data);
}

export async function rpc(method, params = {}, {signal} = {}) {
  let answer;
  try {
    answer = await fetch("rpc", {
      method: "POST",
      headers: headers(true),
      body: JSON.stringify({jsonrpc: "2.0", id: 1, method, params}),
      signal,
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError("NETWORK", String(e.message || e));
  }
  let reply;
  try {
    reply = await answer.json();
  } catch (e) {
    throw new ApiError("HTTP", "HTTP " + answer.status);
  }
  if (reply.error) throw toError(reply.error);
  return reply.result;
}

// Opens a stream (WatchNotifications, ExportIdeas) on /rpc/stream and calls
// `onItem` for each message; resolves with the error line, if any, when it ends.
export async function stream(method, params, onItem, signal) {
  const answer = await fetch("rpc/stream", {
    method: "POST",
    headers: headers(true),
    body: JSON.stringify({jsonrpc: "2.0", id: 1, method, params}),
    signal,
  });
  if (!answer.ok || !answer.body) {
    // A refusal before the stream opened (a bad call, too many streams) is an
    // NDJSON error line too: its words, not just the HTTP status.
    const text = await answer.text().catch(() => "");
    let reply = null;
    try {
      reply = JSON.parse(text.split("\n")[0]);
    } catch (e) {
      reply = null;
    }
    if (reply && reply.error) throw toError(reply.error);
    throw new ApiError("HTTP", "HTTP " + answer.status);
  }
  const reader = answer.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  let failure = null;
  for (;;) {
    const {value, done} = await reader.read();
    buffered += decoder.decode(value || new Uint8Array(), {stream: !done});
    let end;
    while ((end = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, end).trim();
      buffered = buffered.slice(end + 1);
      if (!line) continue;
      const reply = JSON.parse(line);
      if (reply.error) failure = toError(reply.error);
      else onItem(reply.result);
    }
    if (done) return failure;
  }
}

export async function gatewayConfig() {
  try {
    const answer = await fetch("web/config");
    return await answer.json();
  } catch (e) {
    return {devSignIn: false};
  }
}

export async function devToken(memberId, role) {
  let answer;
  try {
    answer = await fetch("dev/token", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({memberId, role}),
    });
  } catch (e) {
    throw new ApiError("NETWORK", String(e.message || e));
  }
  const reply = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    const error = reply.error || {};
    throw new ApiError(answer.status === 404 ? "NOT_FOUND" : "INVALID_ARGUMENT",
      error.message || "HTTP " + answer.status,
      error.field ? {fieldViolations: [{field: error.field, description: error.message}]} : {});
  }
  return reply.token;
}

// A request id per user action, so a retried mutation is applied once.
export function requestId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
