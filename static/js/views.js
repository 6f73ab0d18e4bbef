// The dashboard's views. Each one owns a piece of the DOM and changes it in place: a message
// updates the text nodes or the one list item it concerns, never re-renders a whole list.

import {
  formatAgo, formatChange, formatCountdown, formatHashrate, formatInt, formatSI, parseTime,
} from "./format.js";

/** Create an element: h("li", {class: "x", dataset: {id: 1}}, "text", child). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Set text only when it changed (no needless layout, no flicker); true if it changed. */
export function setText(el, text) {
  if (!el || el.textContent === text) return false;
  el.textContent = text;
  return true;
}

/** Replay a one-shot CSS animation class. */
export function flash(el, name = "bump") {
  el.classList.remove(name);
  void el.offsetWidth; // restart the animation
  el.classList.add(name);
}

// -- stats cards ---------------------------------------------------------------------------
export class StatsCards {
  constructor(root) {
    this.root = root;
    this.fields = new Map([...root.querySelectorAll("[data-field]")].map((el) => [el.dataset.field, el]));
    this.xpFill = root.querySelector("#xp-fill");
    this.xpBar = this.xpFill?.parentElement;
    this.stats = {};
  }

  /** Merge `partial` (a stats_update, REST stats, or an event carrying some of the fields). */
  apply(partial) {
    Object.assign(this.stats, partial);
    const s = this.stats;
    const has = (...keys) => keys.some((k) => k in partial);
    if (has("hashrate")) this._set("hashrate", formatHashrate(s.hashrate));
    if (has("hashrate_change")) this._change("hashrate_change", s.hashrate_change, "vs 24 h ago");
    if (has("shares_today")) this._set("shares_today", formatInt(s.shares_today));
    if (has("shares_change")) this._change("shares_change", s.shares_change, "vs yesterday");
    if (has("workers_online", "workers_total")) {
      const online = s.workers_online ?? 0;
      const total = s.workers_total ?? 0;
      this._set("workers", `${online} / ${total}`);
      this._set("workers_sub", total === 0 ? "no workers yet"
        : online === total ? "all online" : `${total - online} offline`, false);
    }
    if (has("streak")) this._set("streak", formatInt(s.streak));
    if (has("best_diff_week")) this._set("best_diff_week", formatSI(s.best_diff_week));
    if (has("best_diff_ratio")) {
      const ratio = Number(s.best_diff_ratio);
      this._set("best_diff_ratio", ratio > 0 ? `${formatPercentOf(ratio)} of network` : "—", false);
    }
    if (has("network_diff")) this._set("network_diff", formatSI(s.network_diff));
    if (has("network_height")) {
      this._set("network_height", s.network_height ? `height ${formatInt(s.network_height)}` : "", false);
    }
    if (has("level")) this._set("level", String(s.level));
    if (has("level_title")) this._set("level_title", s.level_title ?? "", false);
    if (has("xp", "xp_to_next")) this._xp(s.xp ?? 0, s.xp_to_next ?? 0);
    if (has("badges_earned")) this._set("badges_earned", formatInt(s.badges_earned));
  }

  _set(field, text, bump = true) {
    const el = this.fields.get(field);
    if (setText(el, text) && bump && this._ready) flash(el.closest(".card"));
  }

  _change(field, percent, suffix) {
    const el = this.fields.get(field);
    if (!el) return;
    setText(el, `${formatChange(percent)} ${suffix}`);
    el.classList.toggle("up", Number(percent) > 0);
    el.classList.toggle("down", Number(percent) < 0);
  }

  _xp(xp, next) {
    this._set("xp", next ? `${formatInt(xp)} / ${formatInt(next)} XP` : `${formatInt(xp)} XP`, false);
    const percent = next > 0 ? Math.max(0, Math.min(100, (xp / next) * 100)) : 0;
    if (this.xpFill) this.xpFill.style.width = `${percent.toFixed(1)}%`;
    this.xpBar?.setAttribute("aria-valuenow", percent.toFixed(0));
  }

  /** From now on a changed value flashes its card (not on the first paint). */
  ready() {
    this._ready = true;
  }
}

function formatPercentOf(ratio) {
  const percent = ratio * 100;
  if (percent >= 1) return `${percent.toFixed(1)}%`;
  return `${percent.toPrecision(2)}%`;
}

// -- keyed lists ---------------------------------------------------------------------------
/**
 * A list of items kept in `compare` order, one element per `key(item)`. `render` builds an
 * element, `patch` updates one in place. Only what changed is touched.
 */
export class KeyedList {
  constructor(list, empty, { key, compare, render, patch = () => {}, max = Infinity }) {
    this.list = list;
    this.empty = empty;
    this.rows = new Map();
    this._byEl = new WeakMap();
    Object.assign(this, { key, compare, render, patch, max });
  }

  /** Insert or update one item; `animate` marks a new element as just arrived. */
  upsert(item, { animate = false } = {}) {
    const id = this.key(item);
    let row = this.rows.get(id);
    if (row) {
      row.item = item;
      this.patch(row.el, item);
    } else {
      row = { item, el: this.render(item) };
      if (animate) row.el.classList.add("enter");
      this.rows.set(id, row);
      this._byEl.set(row.el, row);
    }
    this._place(row);
    this._trim();
    this._empty();
    return row.el;
  }

  remove(id) {
    const row = this.rows.get(id);
    if (!row) return;
    row.el.remove();
    this.rows.delete(id);
    this._empty();
  }

  /** Make the list hold `items` (a REST snapshot); rows `keep(item)` approves stay too. */
  reconcile(items, keep = () => false) {
    const wanted = new Set(items.map((item) => this.key(item)));
    for (const [id, row] of [...this.rows]) {
      if (!wanted.has(id) && !keep(row.item)) this.remove(id);
    }
    for (const item of items) this.upsert(item);
    this._empty();
  }

  items() {
    return [...this.rows.values()].map((row) => row.item);
  }

  _place(row) {
    // Before the first element that sorts after it; untouched if it is there already.
    let next = null;
    for (let el = this.list.firstElementChild; el; el = el.nextElementSibling) {
      const other = el === row.el ? null : this._byEl.get(el);
      if (other && this.compare(row.item, other.item) < 0) {
        next = el;
        break;
      }
    }
    if (row.el.parentNode === this.list && row.el.nextElementSibling === next) return;
    this.list.insertBefore(row.el, next);
  }

  _trim() {
    while (this.rows.size > this.max && this.list.lastElementChild) {
      const row = this._byEl.get(this.list.lastElementChild);
      if (!row) break;
      this.remove(this.key(row.item));
    }
  }

  _empty() {
    if (this.empty) this.empty.hidden = this.rows.size > 0;
  }
}

// -- feed, events, badges --------------------------------------------------------------------
const FEED_ICONS = {
  block_found: "🧱", badge_earned: "🏅", new_miner: "👋", level_up: "⬆️", competition: "🏆",
};

/** A feed item as REST gives it, from REST or from a live `feed_item` publication. */
export function feedItem(data) {
  return {
    id: Number(data.id),
    type: data.feed_type ?? data.type,
    text: data.text ?? data.title ?? "",
    description: data.description ?? null,
    time: data.time ?? null,
    metadata: data.metadata ?? {},
  };
}

export function feedList(list, empty, me, max = 30) {
  return new KeyedList(list, empty, {
    key: (item) => item.id,
    compare: (a, b) => b.id - a.id,
    max,
    render: (item) => h("li", {
      class: `feed-item feed-${item.type}${item.metadata?.user_id === me ? " mine" : ""}`,
      dataset: { id: item.id, type: item.type },
    },
    h("span", { class: "feed-icon", "aria-hidden": "true" },
      item.metadata?.icon ?? FEED_ICONS[item.type] ?? "•"),
    h("div", { class: "feed-body" },
      h("p", { class: "feed-text" }, item.text),
      item.description ? h("p", { class: "feed-desc" }, item.description) : null),
    h("time", { class: "feed-time", datetime: item.time ?? "", dataset: { at: parseTime(item.time) } },
      formatAgo(Date.now() - parseTime(item.time)))),
  });
}

/** An upcoming event from REST, or from an `event_reminder` publication. */
export function upcomingEvent(data) {
  return {
    id: String(data.id),
    type: data.event_type ?? data.type,
    title: data.title ?? "",
    description: data.description ?? null,
    ends_at: data.ends_at,
    endsAt: parseTime(data.ends_at),
    action: data.action ?? null,
  };
}

export function eventList(list, empty) {
  const render = (e) => h("li", { class: `event event-${e.type}`, dataset: { id: e.id } },
    h("div", { class: "event-main" },
      h("p", { class: "event-title" }, e.title),
      h("p", { class: "event-desc" }, e.description ?? "")),
    h("div", { class: "event-side" },
      h("span", { class: "countdown", dataset: { ends: e.endsAt } }, formatCountdown(e.endsAt - Date.now())),
      e.action?.label
        ? h("a", { class: "event-action", href: safeHref(e.action.href) }, e.action.label)
        : null));
  return new KeyedList(list, empty, {
    key: (e) => e.id,
    compare: (a, b) => a.endsAt - b.endsAt,
    max: 10,
    render,
    patch: (el, e) => {
      setText(el.querySelector(".event-title"), e.title);
      setText(el.querySelector(".event-desc"), e.description ?? "");
      el.querySelector(".countdown").dataset.ends = e.endsAt;
    },
  });
}

/** Links from event producers: same-site paths and http(s) only (no `javascript:`). */
export function safeHref(href) {
  if (typeof href !== "string" || !href) return "#";
  try {
    const url = new URL(href, globalThis.location?.href ?? "http://localhost/");
    return url.protocol === "http:" || url.protocol === "https:" ? href : "#";
  } catch {
    return "#";
  }
}

export function badgeList(list, empty, max = 5) {
  return new KeyedList(list, empty, {
    key: (b) => b.badge_id ?? b.id,
    compare: (a, b) => parseTime(b.earned_at) - parseTime(a.earned_at),
    max,
    render: (b) => h("li", {
      class: `badge rarity-${b.rarity ?? "common"}`, dataset: { id: b.badge_id ?? b.id },
    },
      h("span", { class: "badge-icon", "aria-hidden": "true" }, b.icon ?? "🏅"),
      h("div", {},
        h("p", { class: "badge-name" }, b.name ?? b.badge_id),
        h("p", { class: "badge-desc" }, b.description ?? "")),
      h("time", { class: "badge-time", dataset: { at: parseTime(b.earned_at) } },
        formatAgo(Date.now() - parseTime(b.earned_at)))),
  });
}

/** Once a second: countdowns and "x s ago" labels, text nodes only. */
export function tickTimes(root, now = Date.now()) {
  for (const el of root.querySelectorAll(".countdown[data-ends]")) {
    const left = Number(el.dataset.ends) - now;
    setText(el, formatCountdown(left));
    el.classList.toggle("soon", left > 0 && left < 3600_000);
    el.closest(".event")?.classList.toggle("ended", left <= 0);
  }
  for (const el of root.querySelectorAll("time[data-at]")) {
    const at = Number(el.dataset.at);
    if (Number.isFinite(at)) setText(el, formatAgo(now - at));
  }
}

// -- toasts --------------------------------------------------------------------------------
export class Toasts {
  constructor(root, { max = 4, ttlMs = 6000 } = {}) {
    this.root = root;
    this.max = max;
    this.ttlMs = ttlMs;
  }

  show({ icon = "✨", title, body = "", kind = "info" }) {
    const el = h("div", { class: `toast toast-${kind}`, role: "status" },
      h("span", { class: "toast-icon", "aria-hidden": "true" }, icon),
      h("div", {},
        h("p", { class: "toast-title" }, title),
        body ? h("p", { class: "toast-body" }, body) : null));
    this.root.append(el);
    while (this.root.children.length > this.max) this.root.firstElementChild.remove();
    setTimeout(() => {
      el.classList.add("leaving");
      setTimeout(() => el.remove(), 400);
    }, this.ttlMs);
    return el;
  }
}

// -- connection indicator ------------------------------------------------------------------
const MODE_LABELS = {
  idle: "Connecting…",
  connecting: "Connecting…",
  websocket: "WebSocket",
  sse: "SSE",
  polling: "Polling",
  offline: "Offline",
  unauthorized: "Signed out",
  closed: "Closed",
};

export class ConnectionIndicator {
  constructor({ button, label, latency, details }) {
    Object.assign(this, { button, label, latency, details });
    this.state = { mode: "connecting", retryAt: null };
  }

  setState(state) {
    this.state = state;
    this.button.dataset.mode = state.mode;
    this.render();
  }

  /** Also called every second: the retry countdown and the metrics line. */
  render(metrics = null, now = Date.now()) {
    const { mode, retryAt } = this.state;
    let text = MODE_LABELS[mode] ?? mode;
    if (mode === "offline" && retryAt && retryAt > now) {
      text += ` · retry in ${Math.ceil((retryAt - now) / 1000)} s`;
    }
    setText(this.label, text);
    const live = mode === "websocket" || mode === "sse" || mode === "polling";
    const ms = metrics?.latency;
    setText(this.latency, live && Number.isFinite(ms) ? `${Math.round(ms)} ms` : "");
    if (metrics) {
      const line = `${MODE_LABELS[mode] ?? mode} · sent ${metrics.sent} · received ${metrics.received}`
        + ` · reconnects ${metrics.reconnects} · gaps ${metrics.gaps} · resyncs ${metrics.resyncs}`;
      setText(this.details, line);
      this.button.title = line;
    }
  }
}
