// The live leaderboard: rows keyed by user, reordered with a FLIP animation when ranks change
// (seed 001 §8.4: "live rank animation data"). A burst of `leaderboard_update` messages (one
// per row that moved) is applied in one animation frame.

import { formatInt, formatSI } from "./format.js";
import { flash, h, setText } from "./views.js";

const SCORE_FORMAT = {
  hashrate: (v) => `${Number(v).toFixed(2)} TH/s`, // the demo scores hashrate in TH/s
  shares: (v) => formatInt(v),
  best_diff: (v) => formatSI(v),
};

export class Leaderboard {
  constructor(list, empty, { me, limit = 10 }) {
    this.list = list;
    this.empty = empty;
    this.me = me;
    this.limit = limit;
    this.category = null;
    this.rows = new Map(); // user_id -> {entry, el}
    this._frame = null;
  }

  /** Show `category` from a REST snapshot (a new category starts from an empty list). */
  load(category, entries) {
    if (category !== this.category) {
      this.category = category;
      for (const row of this.rows.values()) row.el.remove();
      this.rows.clear();
    }
    const wanted = new Set(entries.map((e) => e.user_id));
    for (const [id, row] of [...this.rows]) {
      if (!wanted.has(id)) {
        row.el.remove();
        this.rows.delete(id);
      }
    }
    for (const entry of entries) this._upsert(entry, false);
    this._reorder(false);
  }

  /** One `leaderboard_update` publication. */
  update(entry) {
    if (entry.category && entry.category !== this.category) return;
    if (entry.rank === null || entry.rank === undefined || entry.rank > this.limit) {
      const row = this.rows.get(entry.user_id);
      if (row) {
        row.el.remove();
        this.rows.delete(entry.user_id);
      }
    } else {
      this._upsert(entry, true);
    }
    this._schedule();
  }

  _upsert(entry, live) {
    let row = this.rows.get(entry.user_id);
    if (!row) {
      row = { entry, el: this._render(entry) };
      this.rows.set(entry.user_id, row);
      if (live) row.el.classList.add("enter");
    }
    const before = row.entry.rank;
    row.entry = { ...row.entry, ...entry };
    this._patch(row, live && before !== undefined && before !== entry.rank);
  }

  _render(entry) {
    const mine = entry.user_id === this.me ? " me" : "";
    return h("li", { class: `lb-row${mine}`, dataset: { user: entry.user_id } },
      h("span", { class: "lb-rank" }),
      h("span", { class: "lb-name" }),
      h("span", { class: "lb-change" }),
      h("span", { class: "lb-score" }));
  }

  _patch(row, moved) {
    const { el, entry } = row;
    setText(el.querySelector(".lb-rank"), `#${entry.rank}`);
    setText(el.querySelector(".lb-name"), entry.display_name ?? `miner-${entry.user_id}`);
    const change = Number(entry.rank_change) || 0;
    const chip = el.querySelector(".lb-change");
    const isNew = entry.previous_rank === null || entry.previous_rank === undefined;
    setText(chip, isNew ? "new" : change > 0 ? `▲${change}` : change < 0 ? `▼${-change}` : "");
    chip.classList.toggle("up", change > 0 || isNew);
    chip.classList.toggle("down", change < 0);
    const format = SCORE_FORMAT[this.category] ?? formatSI;
    setText(el.querySelector(".lb-score"), format(entry.score));
    if (moved) flash(el, change >= 0 ? "moved-up" : "moved-down");
  }

  _schedule() {
    if (this._frame !== null) return;
    const raf = globalThis.requestAnimationFrame ?? ((fn) => setTimeout(fn, 16));
    this._frame = raf(() => {
      this._frame = null;
      this._reorder(true);
    });
  }

  /** Put rows in rank order; with `animate`, slide each from where it was (FLIP). */
  _reorder(animate) {
    const rows = [...this.rows.values()];
    const first = new Map(animate ? rows.map((r) => [r, r.el.getBoundingClientRect().top]) : []);
    const rank = (row) => row.entry.rank ?? Number.MAX_SAFE_INTEGER; // unranked last
    rows.sort((a, b) => rank(a) - rank(b) || b.entry.score - a.entry.score);
    rows.forEach((row, index) => {
      const at = this.list.children[index] ?? null;
      if (at !== row.el) this.list.insertBefore(row.el, at);
    });
    while (this.list.children.length > rows.length) this.list.lastElementChild.remove();
    if (this.empty) this.empty.hidden = rows.length > 0;
    if (!animate) return;
    for (const row of rows) {
      const was = first.get(row);
      if (was === undefined) continue;
      const dy = was - row.el.getBoundingClientRect().top;
      if (Math.abs(dy) < 1) continue;
      row.el.style.transition = "none";
      row.el.style.transform = `translateY(${dy}px)`;
      void row.el.offsetWidth; // commit the inverted position before animating back
      row.el.style.transition = "";
      row.el.style.transform = "";
    }
  }
}
