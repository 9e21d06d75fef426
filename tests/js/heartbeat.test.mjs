// The adaptive heartbeat machine (AdaptiveHeartbeat, PROTOCOL.md §1.6 rule 2) against its
// invariants on random runs, and step for step against the Python SDK's own machine
// (protocol/heartbeat.py): the two SDKs follow one rule.

import test from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

import { AdaptiveHeartbeat } from "../../src/longlink/web/sdk/longlink.js";
import { ROOT } from "./helpers.mjs";

/** A small seeded PRNG (mulberry32): the runs are the same on every machine. */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random runs: a base, the server's maximum, and a sequence of answered and missed beats. */
function runs(count, seed = 16) {
  const rnd = random(seed);
  const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
  return Array.from({ length: count }, () => ({
    base: int(1, 120),
    serverMax: int(1, 600),
    // Misses rarer than answers, so the interval has room to grow between them.
    events: Array.from({ length: int(0, 200) }, () => (rnd() < 0.1 ? "miss" : "ok")),
  }));
}

/** Drive one machine through a run like the client does; the trace of every step. */
function play({ base, serverMax, events }, check = () => {}) {
  const beat = new AdaptiveHeartbeat(base, { ceiling: 300 });
  const trace = [];
  let runBefore = 0;
  for (const event of events) {
    if (event === "miss") {
      const ask = beat.missed();
      check("miss", beat, { ask });
      trace.push(["miss", ask, beat.interval, beat.ceiling, beat.run]);
      runBefore = 0;
      continue;
    }
    const ask = beat.ask();
    beat.sent(ask);
    // The server clamps what was asked for to its own bounds (and answers only if asked).
    const granted = ask === null ? null : Math.max(1, Math.min(serverMax, ask));
    beat.answered(granted);
    check("ok", beat, { ask, runBefore });
    trace.push(["ok", ask, beat.interval, beat.ceiling, beat.run]);
    runBefore = beat.run;
  }
  return trace;
}

test("grows after a streak of answers and stops at the maximum the server grants", () => {
  const beat = new AdaptiveHeartbeat(30, { ceiling: 300 });
  for (let i = 0; i < 3; i++) {
    assert.equal(beat.ask(), null);
    beat.sent(null);
    beat.answered(null);
  }
  assert.equal(beat.ask(), 45);
  beat.sent(45);
  beat.answered(40); // the server clamps: 40 is its maximum
  assert.equal(beat.interval, 40);
  assert.equal(beat.ceiling, 40);
  for (let i = 0; i < 5; i++) {
    beat.sent(beat.ask());
    beat.answered(null);
  }
  assert.equal(beat.ask(), null);
  assert.equal(beat.interval, 40);
});

test("one miss falls back to the base at once; not adaptive stays at the base", () => {
  const beat = new AdaptiveHeartbeat(10);
  for (let i = 0; i < 3; i++) {
    beat.sent(beat.ask());
    beat.answered(null);
  }
  beat.sent(beat.ask());
  beat.answered(15);
  assert.equal(beat.interval, 15);
  assert.equal(beat.missed(), 10);
  assert.equal(beat.interval, 10);
  assert.equal(beat.run, 0);
  assert.equal(beat.missed(), null); // already at the base: nothing to tell the server
  const fixed = new AdaptiveHeartbeat(30, { adaptive: false });
  for (let i = 0; i < 10; i++) {
    fixed.sent(fixed.ask());
    fixed.answered(null);
  }
  assert.equal(fixed.interval, 30);
  assert.equal(fixed.ask(), null);
  assert.throws(() => new AdaptiveHeartbeat(0), RangeError);
  assert.equal(new AdaptiveHeartbeat(30).replyTimeoutS, 10);
  assert.equal(new AdaptiveHeartbeat(1).replyTimeoutS, 1);
});

test("property: on 2000 random runs the interval never leaves its bounds and one miss resets it", () => {
  let grew = 0;
  for (const run of runs(2000)) {
    const { base, serverMax } = run;
    const top = Math.max(base, Math.min(300, serverMax));
    play(run, (event, beat, { ask, runBefore }) => {
      assert.ok(beat.interval >= base && beat.interval <= top, `interval ${beat.interval} outside [${base}, ${top}]`);
      assert.ok(Number.isInteger(beat.interval));
      if (event === "miss") {
        assert.equal(beat.interval, base, "a miss falls back to the base at once");
        assert.equal(beat.run, 0);
      } else if (ask !== null) {
        assert.ok(ask > beat.base && runBefore >= beat.streak, "asks only after a streak, and for more");
        assert.ok(ask <= 300);
        if (beat.interval > base) grew += 1;
      }
    });
  }
  assert.ok(grew > 100, "the runs do exercise growth");
});

test("step for step the same as the Python SDK's machine (protocol/heartbeat.py)", (t) => {
  const python = join(ROOT, ".venv", "bin", "python");
  if (!existsSync(python)) {
    if (process.env.CI === "true") assert.fail(`${python} is missing: run make venv`);
    t.skip("no .venv: run make venv");
    return;
  }
  const cases = runs(300, 1606);
  const script = `
import json, sys
from longlink.protocol.heartbeat import AdaptiveHeartbeat
out = []
for case in json.load(sys.stdin):
    beat = AdaptiveHeartbeat(case["base"], ceiling=300)
    trace = []
    for event in case["events"]:
        if event == "miss":
            ask = beat.missed()
        else:
            ask = beat.ask()
            beat.sent(ask)
            beat.answered(None if ask is None else max(1, min(case["serverMax"], ask)))
        trace.append([event, ask, beat.interval, beat.ceiling, beat.run])
    out.append(trace)
json.dump(out, sys.stdout)
`;
  const result = spawnSync(python, ["-c", script], { input: JSON.stringify(cases), encoding: "utf8" });
  assert.equal(result.status, 0, result.stderr);
  const expected = JSON.parse(result.stdout);
  cases.forEach((run, i) => assert.deepEqual(play(run), expected[i], `run ${i}: ${JSON.stringify(run).slice(0, 200)}`));
});
