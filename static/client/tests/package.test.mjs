// The package's own promises: its exports resolve, it has no runtime dependencies, the version is
// the same everywhere, the changelog names it.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, existsSync } from "node:fs";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));

test("package.json: ES module, exports with types, no runtime dependencies", async () => {
  assert.equal(pkg.name, "pulse-realtime-client");
  assert.equal(pkg.type, "module");
  assert.equal(pkg.dependencies, undefined, "no runtime dependencies");
  for (const [entry, target] of Object.entries(pkg.exports)) {
    if (typeof target === "string") continue;
    for (const file of [target.default, target.types]) {
      assert.ok(existsSync(new URL(`../${file}`, import.meta.url)), `${entry}: ${file} exists`);
    }
    const mod = await import(new URL(`../${target.default}`, import.meta.url));
    assert.ok(Object.keys(mod).length > 0, `${entry} exports something`);
  }
  assert.ok(existsSync(new URL(`../${pkg.types}`, import.meta.url)));
});

test("one version: package.json, VERSION, CHANGELOG.md", async () => {
  const { VERSION } = await import("../index.js");
  assert.equal(VERSION, pkg.version);
  const changelog = readFileSync(new URL("../CHANGELOG.md", import.meta.url), "utf8");
  assert.match(changelog, new RegExp(`^## ${pkg.version.replace(/\./g, "\\.")}\\b`, "m"));
});
