// Formatting used by the stats cards, countdowns and the feed.

import { test } from "node:test";
import assert from "node:assert/strict";

import {
  formatAgo, formatChange, formatCountdown, formatHashrate, formatInt, formatSI, parseTime,
} from "../format.js";

test("SI and hashrate formatting keep three significant digits", () => {
  assert.equal(formatHashrate(2.5e14), "250 TH/s");
  assert.equal(formatHashrate(1.234e15), "1.23 PH/s");
  assert.equal(formatHashrate(0), "0 H/s");
  assert.equal(formatSI(1.1e14), "110 T");
  assert.equal(formatSI(999_600), "1.00 M", "rounding up crosses into the next unit");
  assert.equal(formatSI(12.345), "12.3");
  assert.equal(formatSI(Number.NaN), "—");
  assert.equal(formatInt(1234567.4), "1,234,567");
  assert.equal(formatInt(undefined), "—");
});

test("changes, countdowns and ages", () => {
  assert.equal(formatChange(3.24), "▲ 3.2%");
  assert.equal(formatChange(-1), "▼ 1.0%");
  assert.equal(formatChange(0), "± 0%");
  assert.equal(formatCountdown(0), "ended");
  assert.equal(formatCountdown(12_000), "12s");
  assert.equal(formatCountdown(245_000), "4m 05s");
  assert.equal(formatCountdown(3_725_000), "1h 02m 05s");
  assert.equal(formatCountdown(2 * 86_400_000 + 4 * 3_600_000), "2d 4h");
  assert.equal(formatAgo(2000), "just now");
  assert.equal(formatAgo(42_000), "42 s ago");
  assert.equal(formatAgo(5 * 60_000), "5 min ago");
  assert.equal(formatAgo(3 * 3_600_000), "3 h ago");
  assert.equal(parseTime("2026-01-01T00:00:00"), Date.UTC(2026, 0, 1), "naive times are UTC");
  assert.equal(parseTime("2026-01-01T01:00:00+01:00"), Date.UTC(2026, 0, 1));
});
