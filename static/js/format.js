// Number and time formatting for the dashboard (pure functions, tested in tests/format.test.mjs).

const SI = ["", "k", "M", "G", "T", "P", "E", "Z"];

/** 1234 -> "1.23 k", 1.1e14 -> "110 T"; three significant digits. */
export function formatSI(value, unit = "") {
  const n = Number(value);
  if (!Number.isFinite(n)) return "—";
  if (n === 0) return `0${unit ? ` ${unit}` : ""}`;
  let index = Math.min(SI.length - 1, Math.max(0, Math.floor(Math.log10(Math.abs(n)) / 3)));
  let scaled = n / 1000 ** index;
  if (Math.abs(scaled) >= 999.5 && index < SI.length - 1) {
    index += 1;
    scaled /= 1000;
  }
  const digits = Math.abs(scaled) >= 100 ? 0 : Math.abs(scaled) >= 10 ? 1 : 2;
  const suffix = `${SI[index]}${unit}`;
  return `${scaled.toFixed(digits)}${suffix ? ` ${suffix}` : ""}`;
}

/** Hashes per second -> "123 TH/s". */
export function formatHashrate(hps) {
  return formatSI(hps, "H/s");
}

export function formatInt(value) {
  const n = Number(value);
  return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "—";
}

/** 3.24 -> "▲ 3.2%", -1 -> "▼ 1.0%", 0 -> "± 0%". */
export function formatChange(percent) {
  const n = Number(percent);
  if (!Number.isFinite(n) || n === 0) return "± 0%";
  return `${n > 0 ? "▲" : "▼"} ${Math.abs(n).toFixed(1)}%`;
}

/** Time left as "2d 4h", "1h 02m", "4m 05s", "12s"; "ended" at or below zero. */
export function formatCountdown(ms) {
  if (!Number.isFinite(ms) || ms <= 0) return "ended";
  const s = Math.floor(ms / 1000);
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const seconds = s % 60;
  const pad = (v) => String(v).padStart(2, "0");
  if (days > 0) return `${days}d ${hours}h`;
  if (hours > 0) return `${hours}h ${pad(minutes)}m ${pad(seconds)}s`;
  if (minutes > 0) return `${minutes}m ${pad(seconds)}s`;
  return `${seconds}s`;
}

/** "just now", "42 s ago", "5 min ago", "3 h ago", then the date. */
export function formatAgo(ms) {
  if (!Number.isFinite(ms)) return "";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** Milliseconds since the epoch for an ISO time (naive ones are UTC, as the service writes). */
export function parseTime(value) {
  if (!value) return NaN;
  const text = String(value);
  const zoned = /([zZ]|[+-]\d\d:?\d\d)$/.test(text) ? text : `${text}Z`;
  return Date.parse(zoned.replace(" ", "T"));
}
