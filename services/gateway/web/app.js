// The community web app: routes, views and the live notifications badge.
// Every text from the platform goes into the page as text (textContent),
// never as markup.

import {
  ApiError, M, devToken, gatewayConfig, requestId, rpc, session, signIn, signOut, stream,
  takeTokenFromFragment,
} from "./api.js";
import {big, num, when} from "./format.js";
import {has, lang, setLang, t} from "./i18n.js";

const STATUSES = [
  "IDEA_STATUS_OPEN", "IDEA_STATUS_UNDER_REVIEW", "IDEA_STATUS_PLANNED",
  "IDEA_STATUS_IN_PROGRESS", "IDEA_STATUS_SHIPPED", "IDEA_STATUS_DECLINED",
];
const CLOSED = new Set(["IDEA_STATUS_SHIPPED", "IDEA_STATUS_DECLINED", "IDEA_STATUS_MERGED"]);
// The workflow the ideas service enforces (services/ideas/domain.py): one step
// forward, or declined from any state that is not final.
const NEXT = {
  IDEA_STATUS_OPEN: ["IDEA_STATUS_UNDER_REVIEW", "IDEA_STATUS_DECLINED"],
  IDEA_STATUS_UNDER_REVIEW: ["IDEA_STATUS_PLANNED", "IDEA_STATUS_DECLINED"],
  IDEA_STATUS_PLANNED: ["IDEA_STATUS_IN_PROGRESS", "IDEA_STATUS_DECLINED"],
  IDEA_STATUS_IN_PROGRESS: ["IDEA_STATUS_SHIPPED", "IDEA_STATUS_DECLINED"],
};
const ORDERS = {top: "IDEA_ORDER_TOP", trending: "IDEA_ORDER_TRENDING", newest: "IDEA_ORDER_NEWEST"};
const TIERS = ["newcomer", "member", "core", "honorary"];
const PAGE = 20;

const $ = (id) => document.getElementById(id);
let config = {devSignIn: false};
// Bumped on every navigation: an answer for a page no longer shown is dropped.
let generation = 0;
// Where signing in returns to.
let returnTo = "#/";

// --- small helpers ---------------------------------------------------------

function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function voters(count) {
  return t(big(count) === 1n ? "idea.voter" : "idea.voters", {count: num(count)});
}

function statusName(status) {
  return t("status." + (status || "IDEA_STATUS_OPEN"));
}

function chip(status) {
  const name = status || "IDEA_STATUS_OPEN";
  return h("span", {class: "chip " + name.toLowerCase().replace("idea_status_", "s-"),
    text: statusName(name)});
}

// The error in words: what it means, the server's own sentence, the fields.
function errorText(err) {
  if (!(err instanceof ApiError)) return t("code.OTHER") + ": " + String((err && err.message) || err);
  const lead = has("code." + err.code) ? t("code." + err.code) : t("code.OTHER");
  const parts = [err.message];
  for (const v of err.violations) parts.push(v.field + ": " + v.description);
  const info = err.info();
  if (info.allowed_next_statuses) {
    const names = info.allowed_next_statuses.split(",").filter(Boolean).map(statusName);
    if (names.length) parts.push(t("error.allowedNext", {statuses: names.join(", ")}));
  }
  if (err.data.retryAfterSeconds) {
    parts.push(t("error.retryAfter", {seconds: Math.ceil(err.data.retryAfterSeconds)}));
  }
  return lead + ": " + parts.filter(Boolean).join(" — ");
}

function alertBox() {
  return h("p", {class: "alert", role: "alert", hidden: true});
}

function showError(box, err) {
  box.textContent = errorText(err);
  box.hidden = false;
}

// Runs `work` for a button: disabled meanwhile, the error shown in `box`.
async function act(button, box, work) {
  button.disabled = true;
  if (box) box.hidden = true;
  try {
    return await work();
  } catch (err) {
    if (box) showError(box, err);
    else throw err;
    return undefined;
  } finally {
    button.disabled = false;
  }
}

function field(label, input, hint) {
  const id = input.id || "f-" + Math.random().toString(36).slice(2);
  input.id = id;
  return h("div", {class: "field"}, h("label", {for: id, text: label}), input,
    hint ? h("small", {text: hint}) : null);
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  return {parts: path.split("/").filter(Boolean).map(decodeURIComponent),
    query: new URLSearchParams(query || "")};
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function render(...nodes) {
  const main = $("view");
  main.replaceChildren(...nodes.filter((node) => node !== null && node !== undefined && node !== false));
  const heading = main.querySelector("h1");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({preventScroll: true});
    document.title = heading.textContent + " · cocreate";
  }
}

async function pages(method, params, key, limit = 10) {
  const items = [];
  let pageToken = "";
  for (let n = 0; n < limit; n++) {
    const page = await rpc(method, {...params, pageSize: 100, pageToken});
    items.push(...(page[key] || []));
    pageToken = page.nextPageToken;
    if (!pageToken) break;
  }
  return items;
}

// --- header ----------------------------------------------------------------

function renderHeader() {
  const s = session();
  document.documentElement.lang = lang() === "zh" ? "zh-CN" : "en";
  $("skip").textContent = t("app.skip");
  $("console-link").textContent = t("nav.console");
  const nav = $("nav");
  const items = [h("a", {href: "#/", text: t("nav.products")})];
  if (s) {
    items.push(h("a", {href: "#/me", text: t("nav.account")}));
    items.push(h("a", {href: "#/notifications", id: "notifications-link"},
      t("nav.notifications"), " ",
      h("span", {id: "unread", class: "badge", hidden: unread.count === 0,
        "aria-label": t("nav.unread", {count: unread.count}), text: String(unread.count)})));
    if (s.role === "admin") items.push(h("a", {href: "#/admin/weights", text: t("nav.weights")}));
    items.push(h("span", {class: "who", id: "who",
      text: t("nav.signedInAs", {member: s.member, role: t("role." + s.role)})}));
    items.push(h("button", {type: "button", class: "link", id: "sign-out", text: t("nav.signOut"),
      onclick: () => { signOut(); stopWatching(); renderHeader(); go("#/"); }}));
  } else {
    items.push(h("a", {href: "#/signin", id: "sign-in", text: t("nav.signIn")}));
  }
  items.push(h("button", {type: "button", class: "link", id: "language", lang: lang() === "zh" ? "en" : "zh",
    "aria-label": t("nav.languageLabel"), text: t("nav.language"),
    onclick: () => { setLang(lang() === "zh" ? "en" : "zh"); renderHeader(); route(); }}));
  nav.replaceChildren(...items);
}

// --- live notifications ----------------------------------------------------

const unread = {count: 0, abort: null, newest: 0n, listeners: new Set()};

function showUnread() {
  const badge = $("unread");
  if (!badge) return;
  badge.textContent = String(unread.count);
  badge.hidden = unread.count === 0;
  badge.setAttribute("aria-label", t("nav.unread", {count: unread.count}));
}

function stopWatching() {
  if (unread.abort) unread.abort.abort();
  unread.abort = null;
  unread.count = 0;
  unread.newest = 0n;
}

// Follows WatchNotifications on /rpc/stream: the badge counts what arrives,
// and an open notifications page adds it on top. When the stream ends (the
// gateway's stream deadline, a restart) it resumes after the newest id seen.
async function watchNotifications() {
  stopWatching();
  if (!session()) return;
  const abort = new AbortController();
  unread.abort = abort;
  try {
    const first = await rpc(M.notifications, {pageSize: 1});
    unread.count = Number(first.unreadCount || 0);
    for (const n of first.notifications || []) unread.newest = big(n.id);
  } catch (err) {
    return;
  }
  showUnread();
  let backoff = 1000;
  while (!abort.signal.aborted) {
    let failure = null;
    try {
      failure = await stream(M.watch, {afterId: unread.newest.toString()}, (item) => {
        const n = item.notification;
        if (big(n.id) <= unread.newest) return;
        unread.newest = big(n.id);
        if (!n.read) unread.count += 1;
        showUnread();
        for (const listener of unread.listeners) listener(n);
      }, abort.signal);
    } catch (err) {
      if (abort.signal.aborted) return;
      failure = err;
    }
    const code = failure && failure.code;
    if (code === "UNAUTHENTICATED" || code === "PERMISSION_DENIED") return;
    if (!failure || code === "DEADLINE_EXCEEDED") backoff = 1000;
    else backoff = Math.min(backoff * 2, 30000);
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, backoff);
      abort.signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, {once: true});
    });
  }
}

// --- views -----------------------------------------------------------------

async function viewProducts(mine) {
  render(h("h1", {text: t("products.title")}), h("p", {text: t("loading")}));
  const products = await pages(M.listProducts, {}, "products");
  if (mine !== generation) return;
  const list = h("ul", {class: "products"});
  for (const p of products) {
    list.append(h("li", {}, h("a", {href: "#/p/" + encodeURIComponent(p.id), text: p.name}),
      p.description ? h("p", {text: p.description}) : null));
  }
  render(h("h1", {text: t("products.title")}), products.length ? list : h("p", {text: t("empty")}));
}

function tierBar(idea) {
  const counts = idea.votersByTier || {};
  const total = Object.values(counts).reduce((sum, c) => sum + Number(c), 0);
  if (!total) return null;
  const bar = h("div", {class: "tiers", role: "img",
    "aria-label": t("idea.tierBar") + ": " + Object.entries(counts).map(([k, v]) => k + " " + v).join(", ")});
  const names = [...TIERS, ...Object.keys(counts).filter((k) => !TIERS.includes(k))];
  for (const name of names) {
    const count = Number(counts[name] || 0);
    if (!count) continue;
    bar.append(h("span", {class: "tier t-" + name, title: name + ": " + count,
      "data-share": String(Math.round((100 * count) / total))}));
  }
  for (const span of bar.children) span.style.flexGrow = span.dataset.share;
  return bar;
}

// On a board, an idea's tags link to the board filtered by that tag.
function ideaCard(idea, supported = false, productId = "") {
  return h("li", {class: "idea-card" + (idea.hidden ? " is-hidden" : ""), "data-idea": idea.id},
    h("div", {class: "score-box"},
      h("strong", {class: "score", text: num(idea.weightedScore)}),
      h("span", {text: voters(idea.voterCount)})),
    h("div", {class: "idea-main"},
      h("a", {href: "#/i/" + encodeURIComponent(idea.id), class: "idea-title", text: idea.title}),
      h("div", {class: "meta"}, "#" + num(idea.number), " ", chip(idea.status), " ",
        t("idea.comments", {count: num(idea.commentCount)}), " · ", t("idea.by", {author: idea.authorId}),
        idea.hidden ? h("span", {class: "chip s-hidden", text: t("idea.hidden")}) : null,
        supported ? h("span", {class: "chip s-mine", text: t("board.youSupport")}) : null),
      tierBar(idea),
      idea.tags && idea.tags.length && productId
        ? h("p", {class: "tags"}, idea.tags.map((tag) => h("a", {class: "tag", text: tag,
          href: "#/p/" + encodeURIComponent(productId) + "?tag=" + encodeURIComponent(tag)})))
        : null,
      idea.officialResponse && idea.officialResponse.body
        ? h("p", {class: "official-snippet"}, h("b", {text: t("idea.official") + ": "}),
          idea.officialResponse.body)
        : null));
}

async function viewBoard(mine, productId, query) {
  const s = session();
  const state = {
    order: ORDERS[query.get("order")] ? query.get("order") : "top",
    q: query.get("q") || "",
    status: query.get("status") || "",
    tag: query.get("tag") || "",
    hidden: query.get("hidden") === "1",
  };
  render(h("p", {text: t("loading")}));
  const {product} = await rpc(M.getProduct, {productId});
  if (mine !== generation) return;
  const error = alertBox();
  const list = h("ol", {class: "ideas", id: "ideas", "aria-live": "polite"});
  const more = h("button", {type: "button", id: "more", hidden: true, text: t("more")});
  let token = "";
  let loading = 0;

  const filter = () => {
    const f = {productId};
    if (state.status) f.statuses = [state.status];
    if (state.tag) f.tag = state.tag;
    if (state.q) f.query = state.q;
    if (state.hidden) f.includeHidden = true;
    return f;
  };
  const remember = () => {
    const q = new URLSearchParams();
    if (state.order !== "top") q.set("order", state.order);
    if (state.q) q.set("q", state.q);
    if (state.status) q.set("status", state.status);
    if (state.tag) q.set("tag", state.tag);
    if (state.hidden) q.set("hidden", "1");
    const text = q.toString();
    history.replaceState(null, "", "#/p/" + encodeURIComponent(productId) + (text ? "?" + text : ""));
  };
  const load = async (append) => {
    const ticket = ++loading;
    error.hidden = true;
    try {
      const page = await rpc(M.listIdeas, {filter: filter(), order: ORDERS[state.order],
        pageSize: PAGE, pageToken: append ? token : ""});
      if (ticket !== loading || mine !== generation) return;
      const ideas = page.ideas || [];
      const supported = await myVotes(ideas.map((idea) => idea.id));
      if (ticket !== loading || mine !== generation) return;
      if (!append) list.replaceChildren();
      for (const idea of ideas) list.append(ideaCard(idea, supported.has(idea.id), productId));
      if (!list.children.length) list.append(h("li", {class: "none", text: t("board.none")}));
      token = page.nextPageToken || "";
      more.hidden = !token;
    } catch (err) {
      if (ticket === loading) showError(error, err);
    }
  };

  const tabs = h("div", {class: "tabs", role: "group", "aria-label": t("board.order")});
  for (const name of Object.keys(ORDERS)) {
    tabs.append(h("button", {type: "button", "aria-pressed": String(state.order === name),
      "data-order": name, text: t("order." + name), onclick: (event) => {
        state.order = name;
        for (const b of tabs.children) b.setAttribute("aria-pressed", String(b === event.currentTarget));
        remember();
        load(false);
      }}));
  }
  const search = h("input", {type: "search", id: "search", value: state.q,
    placeholder: t("board.searchPlaceholder")});
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.q = search.value.trim(); remember(); load(false); }, 250);
  });
  const status = h("select", {id: "status-filter"}, h("option", {value: "", text: t("board.allStatuses")}),
    STATUSES.map((name) => h("option", {value: name, selected: state.status === name, text: statusName(name)})));
  status.addEventListener("change", () => { state.status = status.value; remember(); load(false); });
  const tag = h("input", {type: "search", id: "tag-filter", value: state.tag,
    placeholder: t("board.tagPlaceholder")});
  tag.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.tag = tag.value.trim(); remember(); load(false); }, 250);
  });
  const controls = h("div", {class: "controls"}, tabs, field(t("board.search"), search),
    field(t("board.status"), status), field(t("board.tag"), tag));
  if (s && s.staff) {
    const hidden = h("input", {type: "checkbox", id: "show-hidden", checked: state.hidden});
    hidden.addEventListener("change", () => { state.hidden = hidden.checked; remember(); load(false); });
    controls.append(h("label", {class: "check"}, hidden, " ", t("board.showHidden")));
  }
  more.addEventListener("click", () => act(more, error, () => load(true)));
  const exporting = s && s.staff ? exportPanel(product, () => ({filter: filter(), order: ORDERS[state.order]})) : null;

  const actions = h("div", {class: "actions"},
    s ? h("a", {class: "button primary", id: "submit-idea", href: "#/p/" + encodeURIComponent(productId) + "/submit",
      text: t("board.submit")})
      : h("a", {class: "button", href: "#/signin", text: t("board.signInToSubmit")}),
    h("a", {class: "button", id: "roadmap-link", href: "#/p/" + encodeURIComponent(productId) + "/roadmap",
      text: t("board.roadmap")}),
    h("a", {class: "button", href: "#/p/" + encodeURIComponent(productId) + "/releases", text: t("board.releases")}),
    s && s.staff ? h("a", {class: "button", href: "#/p/" + encodeURIComponent(productId) + "/triage",
      text: t("board.triage")}) : null);
  render(h("h1", {text: product.name}), product.description ? h("p", {text: product.description}) : null,
    actions, controls, exporting, error, list, more);
  await load(false);
}

// --- export (PMs and admins) ------------------------------------------------

// A spreadsheet would run a cell that starts like a formula: such text gets a
// leading apostrophe, which spreadsheets show as text.
function csvCell(value) {
  let text = String(value ?? "");
  if (/^[=+\-@\t\r]/.test(text)) text = "'" + text;
  return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}

function mdCell(value) {
  return String(value ?? "").replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

const EXPORT_COLUMNS = ["number", "title", "status", "score", "voters", "comments", "author", "created",
  "tags", "id"];

function exportRow(idea, status) {
  return [idea.number || "0", idea.title, status, idea.weightedScore || "0", idea.voterCount || "0",
    idea.commentCount || "0", idea.authorId, idea.createTime || "", (idea.tags || []).join(" "), idea.id];
}

// CSV for spreadsheets (stable English column names and status keys, UTF-8
// with a byte-order mark so Chinese titles open right); Markdown for people,
// in the interface's language.
function toCsv(ideas) {
  const lines = [EXPORT_COLUMNS.join(",")];
  for (const idea of ideas) {
    const status = (idea.status || "IDEA_STATUS_OPEN").replace("IDEA_STATUS_", "").toLowerCase();
    lines.push(exportRow(idea, status).map(csvCell).join(","));
  }
  return "\ufeff" + lines.join("\r\n") + "\r\n";
}

function toMarkdown(product, ideas) {
  const head = EXPORT_COLUMNS.map((c) => t("export.col." + c));
  const lines = ["# " + mdCell(product.name), "",
    t("export.summary", {count: num(ideas.length), when: when(new Date().toISOString())}), "",
    "| " + head.join(" | ") + " |", "|" + head.map(() => " --- |").join("")];
  for (const idea of ideas) {
    lines.push("| " + exportRow(idea, statusName(idea.status)).map(mdCell).join(" | ") + " |");
  }
  return lines.join("\n") + "\n";
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], {type}));
  const link = h("a", {href: url, download: name, hidden: true});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// Downloads the board's current filter and order, streamed by ExportIdeas
// (up to 500 ideas to a message) and built into a file in the browser.
function exportPanel(product, current) {
  const box = alertBox();
  const done = h("span", {class: "meta", id: "export-done", role: "status"});
  const base = (product.name.replace(/[^\p{L}\p{N}]+/gu, "-").replace(/^-|-$/g, "") || "ideas") +
    "-" + new Date().toISOString().slice(0, 10);
  const button = (format) => {
    const b = h("button", {type: "button", id: "export-" + format, text: t("export." + format)});
    b.addEventListener("click", () => act(b, box, async () => {
      done.textContent = t("export.running");
      const ideas = [];
      const {filter, order} = current();
      try {
        const failure = await stream(M.exportIdeas, {filter, order},
          (item) => ideas.push(...(item.ideas || [])));
        if (failure) throw failure;
      } catch (err) {
        done.textContent = "";
        throw err;
      }
      if (format === "csv") download(base + ".csv", toCsv(ideas), "text/csv;charset=utf-8");
      else download(base + ".md", toMarkdown(product, ideas), "text/markdown;charset=utf-8");
      done.textContent = t("export.done", {count: num(ideas.length)});
    }));
    return b;
  };
  return h("div", {class: "actions", id: "export", role: "group", "aria-label": t("export.label")},
    h("span", {class: "meta", text: t("export.label") + ":"}), button("csv"), button("markdown"), done, box);
}

// The signed-in member's active votes among `ideaIds`, by idea id: one call.
async function myVotes(ideaIds) {
  if (!session() || !ideaIds.length) return new Map();
  const answer = await rpc(M.myVotes, {ideaIds, pageSize: ideaIds.length});
  return new Map((answer.votes || []).filter((v) => v.active).map((v) => [v.ideaId, v]));
}

async function viewIdea(mine, ideaId) {
  const s = session();
  render(h("p", {text: t("loading")}));
  let {idea} = await rpc(M.getIdea, /^\d+$/.test(ideaId) ? {number: ideaId} : {ideaId});
  const [comments, history, vote] = await Promise.all([
    pages(M.listComments, {ideaId: idea.id}, "comments"),
    pages(M.history, {ideaId: idea.id}, "entries"),
    myVotes([idea.id]).then((mine) => mine.get(idea.id) || null),
  ]);
  if (mine !== generation) return;
  const error = alertBox();
  let supported = Boolean(vote);

  const score = h("strong", {class: "score", id: "score", text: num(idea.weightedScore)});
  const voterLine = h("span", {id: "voters", text: voters(idea.voterCount)});
  const bars = h("div", {id: "tier-bar"}, tierBar(idea));
  const note = h("p", {class: "quiet", id: "tally-note", "aria-live": "polite"});
  const button = h("button", {type: "button", id: "support"});
  const showTally = (tally) => {
    score.textContent = num(tally.weightedScore);
    voterLine.textContent = voters(tally.voterCount);
    bars.replaceChildren(...[tierBar(tally)].filter(Boolean));
  };
  const showButton = () => {
    if (!s) {
      button.replaceWith(h("a", {class: "button", id: "support", href: "#/signin", text: t("idea.signInToSupport")}));
      return;
    }
    // A closed idea takes no votes and gives none back.
    const closed = CLOSED.has(idea.status);
    button.disabled = closed;
    if (closed) button.textContent = supported ? t("idea.supportedClosed") : t("idea.closed");
    else button.textContent = supported ? t("idea.supported") : t("idea.support");
    button.setAttribute("aria-pressed", String(supported));
    button.setAttribute("aria-label", supported ? t("idea.retractLabel") : t("idea.supportLabel"));
    button.className = supported ? "primary supported" : "primary";
  };
  // The vote counts at once: the score shown moves by the vote's weight; the
  // ideas service's tally (updated by the votes service's event) replaces it
  // when it lands, so what stays on screen is the platform's own number.
  let settle = 0;
  const follow = async (before, shown) => {
    const ticket = ++settle;
    note.textContent = t("idea.updating");
    for (let n = 0; n < 40 && ticket === settle && mine === generation; n++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const fresh = (await rpc(M.getIdea, {ideaId: idea.id})).idea;
      if (ticket !== settle) return;
      if (fresh.weightedScore !== before.weightedScore || fresh.voterCount !== before.voterCount ||
          fresh.weightedScore === shown.weightedScore) {
        idea = fresh;
        showTally(fresh);
        break;
      }
    }
    if (ticket === settle) note.textContent = "";
  };
  button.addEventListener("click", () => act(button, error, async () => {
    const before = {weightedScore: idea.weightedScore, voterCount: idea.voterCount};
    let shown;
    if (supported) {
      const answer = await rpc(M.retract, {ideaId: idea.id, requestId: requestId()});
      const weight = big(answer.vote && answer.vote.weight);
      shown = {weightedScore: String(big(idea.weightedScore) - weight),
        voterCount: String(big(idea.voterCount) - 1n)};
      supported = false;
    } else {
      const answer = await rpc(M.cast, {ideaId: idea.id, requestId: requestId()});
      const weight = big(answer.vote && answer.vote.weight);
      shown = {weightedScore: String(big(idea.weightedScore) + weight),
        voterCount: String(big(idea.voterCount) + 1n)};
      supported = true;
    }
    score.textContent = num(shown.weightedScore);
    voterLine.textContent = voters(shown.voterCount);
    showButton();
    follow(before, shown).catch((err) => showError(error, err));
  }));

  const commentList = h("ol", {class: "comments", id: "comments"});
  const showComment = (c) => commentList.append(h("li", {class: c.official ? "official" : ""},
    h("div", {class: "meta"}, c.authorId, " · ", when(c.createTime),
      c.official ? h("span", {class: "chip s-official", text: t("idea.official")}) : null),
    h("p", {class: "body", text: c.body})));
  comments.forEach(showComment);
  let commentForm = h("p", {class: "quiet", text: t("idea.signInToComment")});
  if (s) {
    const body = h("textarea", {id: "comment-body", rows: 3, maxlength: 5000, required: true});
    const official = h("input", {type: "checkbox", id: "comment-official"});
    const send = h("button", {type: "submit", text: t("idea.send")});
    const box = alertBox();
    commentForm = h("form", {class: "stack", id: "comment-form"}, field(t("idea.commentLabel"), body),
      s.staff ? h("label", {class: "check"}, official, " ", t("idea.officialLabel")) : null, box, send);
    commentForm.addEventListener("submit", (event) => {
      event.preventDefault();
      act(send, box, async () => {
        const answer = await rpc(M.addComment, {ideaId: idea.id, body: body.value,
          official: official.checked, requestId: requestId()});
        showComment(answer.comment);
        body.value = "";
      });
    });
  }

  const historyList = h("ol", {class: "history", id: "history"});
  for (const entry of history) {
    historyList.append(h("li", {}, h("span", {class: "meta", text: when(entry.eventTime) + " · "}),
      t("history." + entry.kind, {actor: entry.actorId, old: statusName(entry.oldStatus),
        new: statusName(entry.newStatus)}), entry.note ? " — " + entry.note : ""));
  }

  let report = null;
  if (s && !s.staff) {
    const reportButton = h("button", {type: "button", class: "link", id: "report", text: t("idea.report")});
    report = h("p", {class: "quiet"}, reportButton);
    reportButton.addEventListener("click", () => act(reportButton, error, async () => {
      await rpc(M.report, {ideaId: idea.id, reason: "spam", requestId: requestId()});
      report.replaceChildren(t("idea.reported"));
    }));
  }

  showButton();
  render(
    h("p", {}, h("a", {href: "#/p/" + encodeURIComponent(idea.productId), text: "← " + t("back")})),
    h("h1", {text: idea.title}),
    h("div", {class: "meta"}, "#" + num(idea.number), " ", chip(idea.status), " ",
      t("idea.by", {author: idea.authorId}), " · ", when(idea.createTime),
      idea.hidden ? h("span", {class: "chip s-hidden", text: t("idea.hidden")}) : null),
    idea.mergedIntoIdeaId ? h("p", {}, t("idea.mergedInto") + " ",
      h("a", {href: "#/i/" + encodeURIComponent(idea.mergedIntoIdeaId), text: idea.mergedIntoIdeaId})) : null,
    h("div", {class: "vote-panel"}, h("div", {class: "score-box"}, score, h("span", {text: t("idea.score")}), voterLine),
      h("div", {}, button, bars, note)),
    error,
    idea.body ? h("div", {class: "body", id: "idea-body", text: idea.body}) : null,
    idea.tags && idea.tags.length ? h("p", {class: "tags"}, t("idea.tags") + ": ",
      idea.tags.map((tag) => h("span", {class: "tag", text: tag}))) : null,
    idea.officialResponse && idea.officialResponse.body ? h("section", {class: "official"},
      h("h2", {text: t("idea.official")}), h("p", {class: "body", text: idea.officialResponse.body}),
      h("div", {class: "meta", text: idea.officialResponse.authorId + " · " + when(idea.officialResponse.createTime)})) : null,
    s && s.staff ? triagePanel(idea, mine) : null,
    h("section", {}, h("h2", {text: t("idea.commentsTitle")}), commentList, commentForm),
    h("section", {}, h("h2", {text: t("idea.history")}), historyList),
    report,
  );
}

function triagePanel(idea, mine) {
  const box = alertBox();
  const reload = () => { if (mine === generation) route(); };
  const panel = h("section", {class: "triage", id: "triage", "aria-labelledby": "triage-title"},
    h("h2", {id: "triage-title", text: t("triage.title")}),
    h("p", {}, t("triage.status", {status: statusName(idea.status)})), box);
  const next = NEXT[idea.status] || [];
  if (next.length) {
    const noteInput = h("input", {id: "status-note", maxlength: 2000});
    const buttons = h("div", {class: "actions", role: "group", "aria-label": t("triage.next")},
      next.map((status) => {
        const b = h("button", {type: "button", "data-status": status, text: "→ " + statusName(status)});
        b.addEventListener("click", () => act(b, box, async () => {
          await rpc(M.changeStatus, {ideaId: idea.id, status, note: noteInput.value, requestId: requestId()});
          reload();
        }));
        return b;
      }));
    panel.append(h("h3", {text: t("triage.next")}), buttons, field(t("triage.note"), noteInput));
  } else {
    panel.append(h("p", {class: "quiet", text: t("triage.final")}));
  }
  if (!CLOSED.has(idea.status)) {
    const target = h("input", {id: "merge-target"});
    const merge = h("button", {type: "button", text: t("triage.merge")});
    merge.addEventListener("click", () => act(merge, box, async () => {
      let targetId = target.value.trim().replace(/^#/, "");
      if (/^\d+$/.test(targetId)) targetId = (await rpc(M.getIdea, {number: targetId})).idea.id;
      await rpc(M.merge, {sourceIdeaId: idea.id, targetIdeaId: targetId, requestId: requestId()});
      reload();
    }));
    panel.append(h("div", {class: "inline"}, field(t("triage.mergeLabel"), target), merge));
  }
  const reason = h("input", {id: "moderation-reason", maxlength: 2000});
  if (idea.hidden) {
    const unhide = h("button", {type: "button", id: "unhide", text: t("triage.unhide")});
    unhide.addEventListener("click", () => act(unhide, box, async () => {
      await rpc(M.unhide, {ideaId: idea.id, reason: reason.value, requestId: requestId()});
      reload();
    }));
    panel.append(h("div", {class: "inline"}, field(t("triage.reason"), reason), unhide));
  } else {
    const spam = h("input", {type: "checkbox", id: "hide-spam"});
    const hide = h("button", {type: "button", id: "hide", text: t("triage.hide")});
    hide.addEventListener("click", () => act(hide, box, async () => {
      await rpc(M.hide, {ideaId: idea.id, reason: reason.value, spam: spam.checked, requestId: requestId()});
      reload();
    }));
    panel.append(h("div", {class: "inline"}, field(t("triage.reason"), reason),
      h("label", {class: "check"}, spam, " ", t("triage.spam")), hide));
  }
  if (!CLOSED.has(idea.status)) {
    const slot = h("div", {class: "inline", id: "plan"});
    panel.append(h("h3", {text: t("triage.plan")}), slot);
    rpc(M.iterations, {productId: idea.productId, states: ["ITERATION_STATE_PLANNING"], pageSize: 20})
      .then(({iterations}) => {
        if (!iterations || !iterations.length) {
          slot.append(h("p", {class: "quiet", text: t("triage.noIteration")}));
          return;
        }
        const pick = h("select", {id: "plan-iteration"},
          iterations.map((it) => h("option", {value: it.id, text: it.name})));
        const plan = h("button", {type: "button", id: "plan-button", text: t("triage.planButton")});
        plan.addEventListener("click", () => act(plan, box, async () => {
          await rpc(M.plan, {iterationId: pick.value, ideaId: idea.id, requestId: requestId()});
          reload();
        }));
        slot.append(field(t("triage.plan"), pick), plan);
      })
      .catch((err) => showError(box, err));
  }
  return panel;
}

async function viewSubmit(mine, productId) {
  if (!session()) return go("#/signin");
  const {product} = await rpc(M.getProduct, {productId});
  if (mine !== generation) return;
  const title = h("input", {id: "idea-title", maxlength: 120, required: true, autocomplete: "off"});
  const body = h("textarea", {id: "idea-text", rows: 6, maxlength: 10000});
  const tags = h("input", {id: "idea-tags"});
  const similar = h("div", {id: "similar", class: "similar", "aria-live": "polite"});
  const box = alertBox();
  const send = h("button", {type: "submit", class: "primary", id: "submit", text: t("submit.send")});
  // One request id for this draft: a second click or a retry files one idea.
  const draftId = requestId();
  let timer = null;
  let asked = 0;
  const suggest = async () => {
    const text = title.value.trim();
    const ticket = ++asked;
    if (text.length < 2) { similar.replaceChildren(); return; }
    try {
      const answer = await rpc(M.similar, {title: text, body: body.value, productId, maxResults: 5});
      if (ticket !== asked) return;
      const found = answer.similarIdeas || [];
      similar.replaceChildren(found.length
        ? h("div", {}, h("p", {text: t("submit.similar")}), h("ul", {}, found.map((f) => h("li", {},
          h("a", {href: "#/i/" + encodeURIComponent(f.idea.id), text: f.idea.title}), " ",
          chip(f.idea.status), " ",
          h("span", {class: "meta", text: voters(f.idea.voterCount) + " · " +
            t("submit.similarity", {percent: Math.round(100 * (f.similarity || 0))})})))))
        : h("p", {class: "quiet", text: t("submit.noSimilar")}));
    } catch (err) {
      if (ticket === asked) showError(box, err);
    }
  };
  title.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(suggest, 200); });
  const form = h("form", {class: "stack", id: "submit-form"},
    field(t("submit.titleLabel"), title, t("submit.titleHint")), similar,
    field(t("submit.bodyLabel"), body), field(t("submit.tagsLabel"), tags), box, send);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(send, box, async () => {
      const answer = await rpc(M.submit, {productId, title: title.value, body: body.value,
        tags: tags.value.split(/[,，]/).map((x) => x.trim()).filter(Boolean), requestId: draftId});
      go("#/i/" + encodeURIComponent(answer.idea.id));
    });
  });
  render(h("p", {}, h("a", {href: "#/p/" + encodeURIComponent(productId), text: "← " + product.name})),
    h("h1", {text: t("submit.title")}), form);
}

async function viewAccount(mine) {
  const s = session();
  if (!s) return go("#/signin");
  render(h("h1", {text: t("account.title")}), h("p", {text: t("loading")}));
  const [{account}, entries, items, redemptions] = await Promise.all([
    rpc(M.account, {memberId: s.member}),
    rpc(M.entries, {memberId: s.member, pageSize: 20}),
    rpc(M.catalogue, {pageSize: 50}),
    rpc(M.redemptions, {pageSize: 20}),
  ]);
  if (mine !== generation) return;
  const box = alertBox();
  const lifetime = big(account.lifetimePoints);
  const toNext = big(account.pointsToNextTier);
  const progress = account.nextTier
    ? h("div", {}, h("progress", {id: "tier-progress", max: String(lifetime + toNext), value: String(lifetime)}),
      h("p", {text: t("account.next", {points: num(account.pointsToNextTier), tier: account.nextTier})}))
    : h("p", {class: "quiet", text: t("account.top")});
  const statement = h("table", {id: "statement"}, h("thead", {}, h("tr", {},
    [t("account.when"), t("account.amount"), t("account.reason"), t("account.after")].map((x) => h("th", {scope: "col", text: x})))),
  h("tbody", {}, (entries.entries || []).map((e) => h("tr", {},
    h("td", {text: when(e.createTime)}),
    h("td", {class: big(e.amount) < 0n ? "minus" : "plus", text: (big(e.amount) > 0n ? "+" : "") + num(e.amount)}),
    h("td", {text: e.reason || e.ruleId || e.kind}), h("td", {text: num(e.balanceAfter)})))));
  const catalogue = h("ul", {class: "catalogue", id: "catalogue"}, (items.items || []).map((item) => {
    const redeem = h("button", {type: "button", text: t("account.redeem", {price: num(item.price)}),
      disabled: big(item.stock) <= 0n || big(account.balance) < big(item.price)});
    redeem.addEventListener("click", () => act(redeem, box, async () => {
      await rpc(M.redeem, {itemId: item.itemId, requestId: requestId()});
      route();
    }));
    return h("li", {}, h("strong", {text: item.name}), item.description ? h("p", {text: item.description}) : null,
      h("span", {class: "meta", text: t("account.stock", {count: num(item.stock)})}), " ", redeem);
  }));
  render(h("h1", {text: t("account.title")}),
    h("dl", {class: "figures", id: "account"},
      h("div", {}, h("dt", {text: t("account.balance")}), h("dd", {id: "balance", text: num(account.balance)})),
      h("div", {}, h("dt", {text: t("account.lifetime")}), h("dd", {text: num(account.lifetimePoints)})),
      h("div", {}, h("dt", {text: t("account.tier")}), h("dd", {id: "tier", text: account.tier}))),
    progress, box,
    h("section", {}, h("h2", {text: t("account.statement")}),
      (entries.entries || []).length ? statement : h("p", {class: "quiet", text: t("empty")})),
    h("section", {}, h("h2", {text: t("account.catalogue")}),
      (items.items || []).length ? catalogue : h("p", {class: "quiet", text: t("empty")})),
    h("section", {}, h("h2", {text: t("account.redemptions")}),
      h("ul", {id: "redemptions"}, (redemptions.redemptions || []).map((r) =>
        h("li", {text: when(r.createTime) + " · " + t("account.redeemed", {name: r.itemName}) + " · " + num(r.price)})))));
}

function notificationItem(n) {
  const link = n.ideaId ? h("a", {href: "#/i/" + encodeURIComponent(n.ideaId), text: n.text}) : h("span", {text: n.text});
  return h("li", {class: n.read ? "" : "unread", "data-id": n.id}, link,
    h("span", {class: "meta", text: " " + t("kind." + n.kind) + " · " + when(n.createTime)}));
}

async function viewNotifications(mine) {
  if (!session()) return go("#/signin");
  const page = await rpc(M.notifications, {pageSize: 50});
  if (mine !== generation) return;
  unread.count = Number(page.unreadCount || 0);
  showUnread();
  const list = h("ul", {class: "notifications", id: "notification-list"},
    (page.notifications || []).map(notificationItem));
  const box = alertBox();
  const markAll = h("button", {type: "button", id: "mark-all", text: t("notifications.markAll")});
  markAll.addEventListener("click", () => act(markAll, box, async () => {
    const marked = await rpc(M.markRead, {all: true, requestId: requestId()});
    unread.count = Number(marked.unreadCount || 0);
    showUnread();
    for (const item of list.children) item.className = "";
  }));
  const listener = (n) => {
    if (mine !== generation) { unread.listeners.delete(listener); return; }
    if (!list.querySelector(`[data-id="${CSS.escape(String(n.id))}"]`)) list.prepend(notificationItem(n));
  };
  unread.listeners.add(listener);
  render(h("h1", {text: t("notifications.title")}), h("p", {class: "quiet", text: t("notifications.live")}),
    h("div", {class: "actions"}, markAll), box, list);
}

// The roadmap's columns, in the order work moves through them.
const ROADMAP = [
  ["planned", "IDEA_STATUS_PLANNED"],
  ["progress", "IDEA_STATUS_IN_PROGRESS"],
  ["shipped", "IDEA_STATUS_SHIPPED"],
];

// Planned and in progress by score (what the community wants most first);
// shipped newest first. ListIdeas has no "by ship time" order: an idea's
// update time is its last change, and a shipped idea takes no more votes, so
// for shipped ideas it is (nearly always) the ship itself.
async function viewRoadmap(mine, productId) {
  render(h("p", {text: t("loading")}));
  const [{product}, ...columns] = await Promise.all([rpc(M.getProduct, {productId}),
    ...ROADMAP.map(([, status]) => pages(M.listIdeas,
      {filter: {productId, statuses: [status]}, order: ORDERS.top}, "ideas", 3))]);
  if (mine !== generation) return;
  const shipped = columns[2];
  shipped.sort((a, b) => String(b.updateTime || "").localeCompare(String(a.updateTime || "")));
  const sections = ROADMAP.map(([key], n) => h("section",
    {class: "roadmap-column", id: "roadmap-" + key, "aria-labelledby": "roadmap-" + key + "-title"},
    h("h2", {id: "roadmap-" + key + "-title"}, t("roadmap." + key),
      h("span", {class: "meta", text: " (" + num(columns[n].length) + ")"})),
    columns[n].length
      ? h("ol", {class: "roadmap-ideas"}, columns[n].map((idea) => h("li", {"data-idea": idea.id},
        h("a", {href: "#/i/" + encodeURIComponent(idea.id), text: idea.title}),
        h("div", {class: "meta", text: "#" + num(idea.number) + " · " + num(idea.weightedScore) + " " +
          t("idea.score") + " · " + voters(idea.voterCount) +
          (key === "shipped" && idea.updateTime ? " · " + when(idea.updateTime) : "")}))))
      : h("p", {class: "quiet", text: t("empty")})));
  render(h("p", {}, h("a", {href: "#/p/" + encodeURIComponent(productId), text: "← " + product.name})),
    h("h1", {text: t("roadmap.title", {product: product.name})}),
    h("div", {class: "roadmap", id: "roadmap"}, sections));
}

function isoWeek(date = new Date()) {
  const d = new Date(Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()));
  const day = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - day);
  const start = new Date(Date.UTC(d.getUTCFullYear(), 0, 1));
  const week = Math.ceil(((d - start) / 86400000 + 1) / 7);
  return d.getUTCFullYear() + "-W" + String(week).padStart(2, "0");
}

async function viewReleases(mine, productId) {
  const s = session();
  const [{product}, releases] = await Promise.all([
    rpc(M.getProduct, {productId}), pages(M.releases, {productId}, "releases", 3)]);
  if (mine !== generation) return;
  const list = h("ul", {class: "releases", id: "releases"}, releases.map((r) => h("li", {},
    h("a", {href: "#/r/" + encodeURIComponent(r.id), text: r.version + " · " + r.iterationName}),
    h("span", {class: "meta", text: " " + when(r.publishTime) + " · " +
      t("releases.shipped", {count: (r.shippedIdeas || []).length})}))));
  const nodes = [h("p", {}, h("a", {href: "#/p/" + encodeURIComponent(productId), text: "← " + product.name})),
    h("h1", {text: t("releases.title")}), releases.length ? list : h("p", {class: "quiet", text: t("empty")})];
  if (s && s.staff) nodes.push(await planPanel(mine, productId));
  if (mine !== generation) return;
  render(...nodes);
}

async function planPanel(mine, productId) {
  const box = alertBox();
  const panel = h("section", {class: "triage", id: "planning"}, h("h2", {text: t("releases.plan")}), box);
  const name = h("input", {id: "iteration-name", value: isoWeek()});
  const create = h("button", {type: "button", id: "create-iteration", text: t("releases.create")});
  create.addEventListener("click", () => act(create, box, async () => {
    await rpc(M.createIteration, {productId, name: name.value.trim(), requestId: requestId()});
    route();
  }));
  panel.append(h("div", {class: "inline"}, field(t("releases.newIteration"), name), create));
  const iterations = (await rpc(M.iterations, {productId,
    states: ["ITERATION_STATE_PLANNING", "ITERATION_STATE_FROZEN"], pageSize: 10})).iterations || [];
  for (const it of iterations) {
    const ideas = await pages(M.iterationIdeas, {iterationId: it.id}, "ideas", 3);
    const rows = h("ul", {class: "iteration-ideas"}, ideas.map((idea) => {
      const done = h("input", {type: "checkbox", checked: idea.done, "data-idea": idea.ideaId});
      done.addEventListener("change", () => act(done, box, async () => {
        await rpc(M.markDone, {iterationId: it.id, ideaId: idea.ideaId, undo: !done.checked, requestId: requestId()});
      }));
      return h("li", {}, h("label", {class: "check"}, done, " ", t("releases.done")), " ",
        h("a", {href: "#/i/" + encodeURIComponent(idea.ideaId), text: "#" + num(idea.number) + " " + idea.title}),
        " ", chip(idea.status), h("span", {class: "meta", text: " " + num(idea.weightedScore)}));
    }));
    const version = h("input", {id: "version-" + it.id, class: "version", value: it.name});
    const cut = h("button", {type: "button", class: "primary cut", text: t("releases.cut")});
    cut.addEventListener("click", () => act(cut, box, async () => {
      const {release} = await rpc(M.cut, {iterationId: it.id, version: version.value.trim(), requestId: requestId()});
      go("#/r/" + encodeURIComponent(release.id));
    }));
    panel.append(h("article", {class: "iteration", "data-iteration": it.name},
      h("h3", {text: it.name + " · " + t("releases.ideasIn", {count: num(it.ideaCount), done: num(it.doneCount)})}),
      rows, h("div", {class: "inline"}, field(t("releases.version"), version), cut)));
  }
  return panel;
}

async function viewReleaseNotes(mine, releaseId) {
  const {notes} = await rpc(M.notes, {releaseId, format: "RELEASE_NOTES_FORMAT_JSON"});
  if (mine !== generation) return;
  const sections = (notes.products || []).map((p) => h("section", {},
    h("h2", {}, h("a", {href: "#/p/" + encodeURIComponent(p.productId), text: p.productName})),
    h("ul", {class: "shipped"}, (p.shippedIdeas || []).map((idea) => h("li", {},
      h("a", {href: "#/i/" + encodeURIComponent(idea.ideaId), text: "#" + num(idea.number) + " " + idea.title}),
      h("span", {class: "meta", text: " · " + num(idea.weightedScore) + " · " +
        t("releases.supporters", {count: num(idea.voterCount)}) + " · " + t("idea.by", {author: idea.authorId})}))))));
  render(h("h1", {text: t("releases.notes") + " " + notes.version}),
    h("p", {class: "meta", text: notes.iterationName + " · " + when(notes.publishTime) + " · " +
      t("releases.supporters", {count: num(notes.totalSupporters)})}),
    ...sections,
    (notes.thanksTo || []).length ? h("section", {}, h("h2", {text: t("releases.thanks")}),
      h("ul", {id: "thanks"}, notes.thanksTo.map((c) => h("li", {text: t("releases.contributor",
        {member: c.memberId, ideas: num(c.shippedIdeas), comments: num(c.comments)})})))) : null);
}

async function viewTriageQueue(mine, productId) {
  const [{product}, reported] = await Promise.all([rpc(M.getProduct, {productId}),
    pages(M.reported, {productId}, "ideas", 3)]);
  if (mine !== generation) return;
  const list = h("ol", {class: "ideas", id: "reported"}, reported.map((idea) => {
    const card = ideaCard(idea);
    card.querySelector(".meta").append(" ", h("span", {class: "chip s-declined",
      text: t("triage.reports", {count: num(idea.reportCount)})}));
    return card;
  }));
  render(h("p", {}, h("a", {href: "#/p/" + encodeURIComponent(productId), text: "← " + product.name})),
    h("h1", {text: t("triage.queueTitle")}), reported.length ? list : h("p", {class: "quiet", text: t("triage.queueEmpty")}));
}

// The tier → weight table. Admins change it; a save names the version it was
// read at, so a change made meanwhile by someone else is refused (ABORTED),
// not overwritten.
async function viewWeights(mine) {
  const s = session();
  if (!s) return go("#/signin");
  const {policy} = await rpc(M.weightPolicy, {});
  if (mine !== generation) return;
  const weights = policy.weights || {};
  const names = [...TIERS.filter((n) => n in weights), ...Object.keys(weights).filter((n) => !TIERS.includes(n))];
  const box = alertBox();
  const saved = h("p", {class: "quiet", id: "policy-saved", role: "status"});
  const inputs = names.map((name) => h("input", {type: "number", min: 1, max: 1000, step: 1, required: true,
    id: "weight-" + name, "data-tier": name, value: String(weights[name]), disabled: s.role !== "admin"}));
  const save = h("button", {type: "submit", class: "primary", id: "save-weights", text: t("weights.save")});
  const form = h("form", {class: "stack", id: "weights-form", novalidate: true},
    h("table", {id: "weights"}, h("thead", {}, h("tr", {},
      h("th", {scope: "col", text: t("account.tier")}), h("th", {scope: "col", text: t("weights.weight")}))),
    h("tbody", {}, names.map((name, n) => h("tr", {}, h("th", {scope: "row"},
      h("label", {for: inputs[n].id, text: name})), h("td", {}, inputs[n]))))),
    box, s.role === "admin" ? save : h("p", {class: "quiet", text: t("weights.adminOnly")}), saved);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (s.role !== "admin") return;
    act(save, box, async () => {
      saved.textContent = "";
      // Whole numbers stay exact as text (int64 in protobuf's JSON).
      const table = Object.fromEntries(inputs.map((input) => [input.dataset.tier, input.value.trim()]));
      const answer = await rpc(M.updateWeightPolicy, {weights: table,
        expectedVersion: policy.version || "0", requestId: requestId()});
      await viewWeights(mine);
      const note = $("policy-saved");
      if (note) note.textContent = t("weights.saved", {version: num(answer.policy.version),
        count: num(answer.reweightedVoteCount)});
    });
  });
  render(h("h1", {text: t("weights.title")}), h("p", {text: t("weights.explain")}),
    h("p", {class: "meta", id: "policy-version", text: t("weights.version", {version: num(policy.version),
      lowest: policy.lowestTier || "", who: policy.updatedBy || "—", when: when(policy.updateTime)})}),
    form);
}

function viewSignIn() {
  const box = alertBox();
  const nodes = [h("h1", {text: t("signin.title")})];
  const done = () => { renderHeader(); watchNotifications(); go(returnTo); };
  if (config.devSignIn) {
    const member = h("input", {id: "member-id", required: true, maxlength: 64, autocomplete: "username"});
    const role = h("select", {id: "role"}, ["member", "pm", "admin"].map((r) => h("option", {value: r, text: t("role." + r)})));
    const send = h("button", {type: "submit", class: "primary", id: "sign-in-button", text: t("signin.go")});
    const form = h("form", {class: "stack", id: "dev-sign-in"}, h("p", {text: t("signin.dev")}),
      field(t("signin.member"), member), field(t("signin.role"), role), send);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      act(send, box, async () => { signIn(await devToken(member.value.trim(), role.value)); done(); });
    });
    nodes.push(form);
  } else {
    nodes.push(h("p", {text: t("signin.production")}));
  }
  if (config.signInUrl) {
    nodes.push(h("p", {}, h("a", {class: "button primary", id: "community-sign-in", href: config.signInUrl,
      text: t("signin.community")})));
  }
  const token = h("input", {id: "token", autocomplete: "off"});
  const use = h("button", {type: "submit", text: t("signin.use")});
  const paste = h("form", {class: "stack", id: "paste-token"}, h("h2", {text: t("signin.paste")}),
    field(t("signin.token"), token), use);
  paste.addEventListener("submit", (event) => {
    event.preventDefault();
    act(use, box, async () => { signIn(token.value.trim()); done(); });
  });
  render(...nodes, box, paste);
}

// --- routing ---------------------------------------------------------------

async function route() {
  const mine = ++generation;
  const {parts, query} = parseHash();
  const [head, id, sub] = parts;
  if (head !== "signin") returnTo = location.hash || "#/";
  try {
    if (!head) await viewProducts(mine);
    else if (head === "p" && id && !sub) await viewBoard(mine, id, query);
    else if (head === "p" && id && sub === "submit") await viewSubmit(mine, id);
    else if (head === "p" && id && sub === "roadmap") await viewRoadmap(mine, id);
    else if (head === "p" && id && sub === "releases") await viewReleases(mine, id);
    else if (head === "p" && id && sub === "triage") await viewTriageQueue(mine, id);
    else if (head === "i" && id) await viewIdea(mine, id);
    else if (head === "r" && id) await viewReleaseNotes(mine, id);
    else if (head === "admin" && id === "weights" && !sub) await viewWeights(mine);
    else if (head === "me") await viewAccount(mine);
    else if (head === "notifications") await viewNotifications(mine);
    else if (head === "signin") viewSignIn();
    else throw new ApiError("NOT_FOUND", location.hash);
  } catch (err) {
    if (mine !== generation) return;
    const box = alertBox();
    showError(box, err);
    render(h("h1", {text: t("code.OTHER")}), box, h("p", {}, h("a", {href: "#/", text: t("nav.products")})));
  }
}

async function start() {
  takeTokenFromFragment();
  config = await gatewayConfig();
  renderHeader();
  window.addEventListener("hashchange", () => { renderHeader(); route(); });
  await route();
  watchNotifications();
}

start();
