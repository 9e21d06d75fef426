// The npm package longlink-client: package.json, the hand-written .d.ts against the module.

import test from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

import * as sdk from "../../src/longlink/web/sdk/longlink.js";
import { ROOT } from "./helpers.mjs";

const DIR = join(ROOT, "src", "longlink", "web", "sdk");
const pkg = JSON.parse(readFileSync(join(DIR, "package.json"), "utf8"));
const dts = readFileSync(join(DIR, "longlink.d.ts"), "utf8");

test("package.json: an ES module package whose files exist, versioned with the Python package", () => {
  assert.equal(pkg.name, "longlink-client");
  assert.equal(pkg.type, "module");
  assert.deepEqual(pkg.exports["."], { types: "./longlink.d.ts", default: "./longlink.js" });
  for (const file of pkg.files) assert.ok(existsSync(join(DIR, file)), file);
  const python = readFileSync(join(ROOT, "src", "longlink", "__init__.py"), "utf8");
  assert.equal(pkg.version, /__version__ = "([^"]+)"/.exec(python)[1]);
  assert.deepEqual(Object.keys(pkg.dependencies ?? {}), []);
});

test("the .d.ts declares every export of the module, and nothing it lacks", () => {
  const declared = new Set(
    [...dts.matchAll(/^export (?:const|function|class) (\w+)/gm)].map((m) => m[1]),
  );
  assert.deepEqual([...declared].sort(), Object.keys(sdk).sort());
});
