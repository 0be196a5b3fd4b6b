#!/usr/bin/env node
// Compares two `conformance server -o DIR` result folders, scenario by scenario:
// every scenario that passes in BASE must pass in OTHER, and every scenario named
// with --require must pass in OTHER whatever BASE did.
//
//   node conformance-compare.mjs --base results/direct --other results/gateway \
//        [--require dns-rebinding-protection] [--labels direct,gateway]
//
// The suite writes one folder per scenario, `server-<scenario>-<ISO time>/checks.json`,
// holding an array of checks with status SUCCESS | FAILURE | WARNING | INFO | SKIPPED.
// A scenario passes when its checks.json exists, parses, and has no FAILURE (the
// suite's own summary rule). Warnings are shown but are not failures; a scenario
// that passes with fewer SUCCESS checks than in BASE is flagged "note".
// Prints a table, then the checks that failed in OTHER; last line
// "N passed, N failed" counts scenarios; exit 1 on any failure.

import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    base: { type: 'string' },
    other: { type: 'string' },
    require: { type: 'string', default: '' },
    labels: { type: 'string', default: 'direct,gateway' },
  },
});
if (!opts.base || !opts.other) {
  console.error('usage: node conformance-compare.mjs --base DIR --other DIR [--require a,b] [--labels x,y]');
  process.exit(2);
}
const [LB, LO] = opts.labels.split(',');
const required = new Set(opts.require.split(',').map((s) => s.trim()).filter(Boolean));

function load(dir) {
  const out = new Map();
  if (!existsSync(dir)) return out;
  for (const d of readdirSync(dir, { withFileTypes: true })) {
    if (!d.isDirectory()) continue;
    const scenario = d.name.replace(/^server-/, '').replace(/-\d{4}-\d{2}-\d{2}T[\d-]+Z$/, '');
    const r = { S: 0, F: 0, W: 0, failures: [], warnings: [], error: null };
    try {
      const checks = JSON.parse(readFileSync(join(dir, d.name, 'checks.json'), 'utf8'));
      for (const c of checks) {
        if (c.status === 'SUCCESS') r.S++;
        else if (c.status === 'FAILURE') { r.F++; r.failures.push(c); }
        else if (c.status === 'WARNING') { r.W++; r.warnings.push(c); }
      }
    } catch (e) {
      r.error = `no readable checks.json (${e.message})`;
      r.F++;
    }
    // Several runs of one scenario in one folder: keep the worst.
    const prev = out.get(scenario);
    if (!prev || r.F > prev.F) out.set(scenario, r);
  }
  return out;
}

const base = load(opts.base);
const other = load(opts.other);
const names = [...new Set([...base.keys(), ...other.keys(), ...required])];
const cell = (r) => (r ? `${r.F === 0 ? 'pass' : 'FAIL'} ${r.S}/${r.F}/${r.W}` : 'missing');
const w = Math.max(...names.map((n) => n.length), 8);
console.log(`${'scenario'.padEnd(w)}  ${`${LB} S/F/W`.padEnd(14)}  ${`${LO} S/F/W`.padEnd(14)}  verdict`);
let passed = 0;
let failed = 0;
const bad = [];
for (const n of names) {
  const b = base.get(n);
  const o = other.get(n);
  const bPass = b && b.F === 0;
  const oPass = o && o.F === 0;
  let verdict;
  if (required.has(n) && !oPass) verdict = `FAIL (required to pass through the ${LO})`;
  else if (bPass && !oPass) verdict = `FAIL (regression: passes ${LB})`;
  else if (!bPass && !oPass) verdict = `ok (fails ${LB} too)`;
  else if (bPass && o.S < b.S) verdict = `ok (note: ${o.S} SUCCESS checks vs ${b.S})`;
  else verdict = 'ok';
  if (verdict.startsWith('FAIL')) { failed++; bad.push([n, o]); } else passed++;
  console.log(`${n.padEnd(w)}  ${cell(b).padEnd(14)}  ${cell(o).padEnd(14)}  ${verdict}`);
}
for (const [n, o] of bad) {
  console.log(`\n# ${n} through the ${LO}:`);
  if (!o) { console.log('#   no result folder (scenario did not run or crashed)'); continue; }
  if (o.error) console.log(`#   ${o.error}`);
  for (const c of o.failures) {
    console.log(`#   FAILURE ${c.id}: ${c.errorMessage ?? c.description}`);
    if (c.details) console.log(`#     details: ${JSON.stringify(c.details).slice(0, 400)}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
