#!/usr/bin/env node
// The real @modelcontextprotocol/server-filesystem, run by the gateway inside its
// sandbox, works inside the sandbox's write path and cannot get out of it — even
// where the server's own checks would let it (its allowed root is the parent of the
// sandbox's directory). The control runs the same server directly, without the
// gateway or a sandbox, and reads the same file outside.
//
//   node fs-sandbox-check.mjs --url http://127.0.0.1:PORT/mcp --root DIR \
//        --server .../server-filesystem/dist/index.js [--prefix fs__]
//
// DIR holds `inside/` (the sandbox's write path, with an empty `hello.txt`) and
// `outside.txt` (not granted).
// Last line of output: "N passed, N failed"; exit code 1 on any failure.

import assert from 'node:assert/strict';
import { parseArgs } from 'node:util';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    root: { type: 'string' },
    server: { type: 'string' },
    prefix: { type: 'string', default: 'fs__' },
  },
});
if (!opts.url || !opts.root || !opts.server) {
  console.error('usage: node fs-sandbox-check.mjs --url URL --root DIR --server INDEX_JS');
  process.exit(2);
}
const inside = path.join(opts.root, 'inside');
const outside = path.join(opts.root, 'outside.txt');

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   - ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL - ${name}: ${e?.message ?? e}`);
  }
}
const text = (r) => (r.content ?? []).map((c) => c.text ?? '').join('\n');

const client = new Client({ name: 'palisade-fs-sandbox-check', version: '0.0.0' });
await client.connect(new StreamableHTTPClientTransport(new URL(opts.url)));
const call = (tool, args) => client.callTool({ name: opts.prefix + tool, arguments: args });

await check('server-filesystem lists its tools through the gateway', async () => {
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  for (const t of ['read_text_file', 'write_file', 'list_directory']) {
    assert.ok(names.includes(opts.prefix + t), `${t} missing from ${names}`);
  }
});
await check('it writes and reads a file inside the sandbox', async () => {
  const file = path.join(inside, 'hello.txt');
  const w = await call('write_file', { path: file, content: 'hello from inside' });
  assert.ok(!w.isError, text(w));
  const r = await call('read_text_file', { path: file });
  assert.ok(!r.isError, text(r));
  assert.equal(text(r), 'hello from inside');
});
await check('it cannot read a file outside the sandbox that its own checks allow', async () => {
  const r = await call('read_text_file', { path: outside });
  assert.ok(r.isError, `read succeeded: ${text(r)}`);
  assert.match(text(r), /EACCES|permission denied/i);
  assert.ok(!text(r).includes('outside secret'), 'the content leaked');
});
await check('it cannot write outside the sandbox', async () => {
  const r = await call('write_file', { path: path.join(opts.root, 'planted.txt'), content: 'x' });
  assert.ok(r.isError, `write succeeded: ${text(r)}`);
});
await check('it cannot list the directory above its sandbox', async () => {
  const r = await call('list_directory', { path: opts.root });
  assert.ok(r.isError, `listed: ${text(r)}`);
});
await check('the gateway and the server keep serving after the refusals', async () => {
  const r = await call('list_directory', { path: inside });
  assert.ok(!r.isError, text(r));
  assert.match(text(r), /hello\.txt/);
});
await client.close();

// The control: the same server without a sandbox reads the same file.
await check('control: without the sandbox, the server reads that file', async () => {
  const direct = new Client({ name: 'palisade-fs-control', version: '0.0.0' });
  await direct.connect(
    new StdioClientTransport({ command: process.execPath, args: [opts.server, opts.root], stderr: 'ignore' }),
  );
  try {
    const r = await direct.callTool({ name: 'read_text_file', arguments: { path: outside } });
    assert.ok(!r.isError, text(r));
    assert.match(text(r), /outside secret/);
  } finally {
    await direct.close();
  }
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
