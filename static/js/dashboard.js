// The dashboard page: who am I, the REST snapshot, then live updates over one connection.
//
// Channels: `dashboard` (stats_update, feed_item, event_reminder, block_found), `gamification`
// (badge_earned, level_up, streak_update), `leaderboard:{category}` (leaderboard_update) and the
// caller's `user:{id}:achievements`. The realtime client (the pulse-realtime-client package in
// static/client/, the same files other apps install) keeps them live across reconnects and
// transports; when it cannot recover what was missed, or while it polls, the
// page reloads the REST snapshot.
//
// Query options: ?transport=websocket|sse|polling pins the client to that rung (and below).

import { ApiClient } from "./api.js";
import { Leaderboard } from "./leaderboard.js";
import { getClient } from "../client/index.js";
import {
  ConnectionIndicator, StatsCards, Toasts, badgeList, eventList, feedItem, feedList, tickTimes,
  upcomingEvent,
} from "./views.js";

const $ = (id) => document.getElementById(id);
const TRANSPORTS = { websocket: ["websocket"], sse: ["sse", "polling"], polling: ["polling"] };
const CATEGORIES = ["hashrate", "shares", "best_diff"];
const RETRY_START_MS = 5000;

const api = new ApiClient();

async function start() {
  let me;
  try {
    me = await api.me();
  } catch (error) {
    if (error.status === 401) return showSignIn();
    showBanner("Pulse is not reachable right now. Retrying…");
    setTimeout(start, RETRY_START_MS);
    return undefined;
  }
  hideBanner();
  $("signin").hidden = true;
  $("app").hidden = false;
  setText($("who"), me.name ?? `miner #${me.user_id}`);
  return new Dashboard(me).run();
}

class Dashboard {
  constructor(me) {
    this.me = me;
    this.stats = new StatsCards(document.querySelector(".cards"));
    this.feed = feedList($("feed"), $("feed-empty"), me.user_id);
    this.events = eventList($("events"), $("events-empty"));
    this.badges = badgeList($("badges"), $("badges-empty"));
    this.board = new Leaderboard($("leaderboard"), $("leaderboard-empty"), { me: me.user_id });
    this.toasts = new Toasts($("toasts"));
    this.indicator = new ConnectionIndicator({
      button: $("conn"), label: $("conn-label"), latency: $("conn-latency"), details: $("conn-details"),
    });
    this.category = CATEGORIES.includes(localStorage.getItem("pulse.category"))
      ? localStorage.getItem("pulse.category") : CATEGORIES[0];
    this.liveSeq = { stats: 0, board: 0 }; // a live update newer than a REST answer in flight
    const pinned = TRANSPORTS[new URLSearchParams(location.search).get("transport")];
    this.client = getClient({
      transports: pinned,
      onResync: () => this.reload().catch(() => {}),
      poll: () => this.reload(),
      onAuthRequired: () => this.reauthenticate(),
      onError: (error) => console.warn("pulse:", error.message),
    });
  }

  async run() {
    const c = this.client;
    c.on("state", (state) => this.indicator.setState(state));
    c.on("metrics", (metrics) => this.indicator.render(metrics));
    c.subscribe("dashboard", (data) => this.onDashboard(data));
    c.subscribe("gamification", (data) => this.onGamification(data));
    c.subscribe(`user:${this.me.user_id}:achievements`, (data) => this.onAchievement(data));
    this.board$ = c.subscribe(`leaderboard:${this.category}`, (data) => this.onBoard(data));
    this.wireTabs();
    c.connect();
    try {
      await this.reload();
    } catch (error) {
      console.warn("pulse: snapshot failed", error);
    }
    this.stats.ready();
    setInterval(() => this.tick(), 1000);
    window.pulse = { client: c, api, dashboard: this }; // for the console and the browser tests
  }

  /** The REST snapshot; also the polling fallback's refresh (errors then mean "offline"). */
  async reload() {
    const seq = { ...this.liveSeq };
    const [stats, feed, events, badges, board] = await Promise.all([
      api.stats(), api.feed({ limit: 20 }), api.events(), api.recentBadges(5),
      api.leaderboard(this.category, 10),
    ]);
    if (seq.stats === this.liveSeq.stats) this.stats.apply(stats);
    const newest = feed.reduce((max, item) => Math.max(max, item.id), 0);
    // Live items newer than the snapshot stay; everything else follows the snapshot.
    this.feed.reconcile(feed.map(feedItem), (item) => item.id > newest);
    this.events.reconcile(events.map(upcomingEvent));
    this.badges.reconcile(badges);
    if (seq.board === this.liveSeq.board) this.board.load(this.category, board);
    const mine = board.find((entry) => entry.user_id === this.me.user_id);
    if (!this.me.name && mine?.display_name) setText($("who"), mine.display_name);
  }

  onDashboard(data) {
    switch (data.type) {
      case "stats_update":
        if (data.user_id !== undefined && data.user_id !== this.me.user_id) return;
        this.liveSeq.stats += 1;
        this.stats.apply(data);
        return;
      case "feed_item":
        this.feed.upsert(feedItem(data), { animate: true });
        return;
      case "event_reminder":
        if (data.ends_at) this.events.upsert(upcomingEvent(data), { animate: true });
        return;
      case "block_found":
        if (data.user_id === this.me.user_id) {
          this.toasts.show({
            icon: "🧱", title: "You found a block!", body: `Block #${data.height}`, kind: "win",
          });
        }
        return;
      default:
    }
  }

  onGamification(data) {
    if (data.user_id !== undefined && data.user_id !== this.me.user_id) return;
    if (data.type === "badge_earned") {
      const badge = { ...data, earned_at: data.earned_at ?? new Date().toISOString() };
      this.badges.upsert(badge, { animate: true });
      this.toasts.show({
        icon: data.icon ?? "🏅", title: `Badge earned: ${data.name ?? data.badge_id}`,
        body: data.description ?? "", kind: "badge",
      });
    } else if (data.type === "level_up") {
      const { level, level_title: title, xp } = data;
      this.stats.apply(xp === undefined ? { level, level_title: title } : { level, level_title: title, xp });
    } else if (data.type === "streak_update" && Number.isFinite(data.streak)) {
      this.stats.apply({ streak: data.streak });
    }
  }

  onAchievement(data) {
    if (data.type !== "achievement_unlocked") return;
    const points = data.points ? ` (+${data.points} XP)` : "";
    this.toasts.show({
      icon: data.icon ?? "🏆", title: data.title ?? "Achievement unlocked",
      body: `${data.description ?? ""}${points}`, kind: "achievement",
    });
  }

  onBoard(data) {
    if (data.type !== "leaderboard_update") return;
    this.liveSeq.board += 1;
    this.board.update(data);
  }

  wireTabs() {
    const tabs = [...$("lb-tabs").querySelectorAll("[data-category]")];
    const select = (category) => {
      for (const tab of tabs) tab.setAttribute("aria-selected", String(tab.dataset.category === category));
    };
    select(this.category);
    for (const tab of tabs) {
      tab.addEventListener("click", async () => {
        const category = tab.dataset.category;
        if (category === this.category) return;
        this.category = category;
        localStorage.setItem("pulse.category", category);
        select(category);
        this.board$.unsubscribe(); // the old category's channel goes with its last subscription
        this.board$ = this.client.subscribe(`leaderboard:${category}`, (data) => this.onBoard(data));
        try {
          const entries = await api.leaderboard(category, 10);
          if (this.category === category) this.board.load(category, entries);
        } catch (error) {
          console.warn("pulse: leaderboard failed", error);
        }
      });
    }
  }

  /** 4001: is the cookie still good? If not, say so and let the client wait. */
  async reauthenticate() {
    try {
      await api.me();
      return true; // still signed in (a transient refusal): reconnect with the cookie
    } catch (error) {
      if (error.status === 401) {
        showBanner("Your session has expired. Sign in again to resume live updates.");
        return null;
      }
      return true;
    }
  }

  tick() {
    tickTimes(document.body);
    this.indicator.render(this.client.metrics());
  }
}

function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text;
}

function showSignIn() {
  $("app").hidden = true;
  $("signin").hidden = false;
  $("conn").dataset.mode = "unauthorized";
  setText($("conn-label"), "Signed out");
  if (location.hash.includes("signin=invalid")) {
    setText($("signin-reason"), "That sign-in link was invalid or has expired.");
  }
}

function showBanner(text) {
  const banner = $("banner");
  setText(banner, text);
  banner.hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
}

start();
