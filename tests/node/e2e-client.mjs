#!/usr/bin/env node
// Palisade end-to-end client: drives @modelcontextprotocol/server-everything
// (directly, or through the gateway) with the official SDK Client over
// Streamable HTTP and checks what comes back.
//
//   node e2e-client.mjs --url http://127.0.0.1:8787/mcp [--prefix everything__]
//                       [--skip 'check name,other check name']
//
// --prefix is prepended to every tool and prompt name (the namespace the
// gateway adds); resource URIs are never renamed.
// --skip takes a comma-separated list of exact check names: they are reported
// as "skip" and counted neither as passed nor as failed. A --skip name that
// matches no check counts as a failure (so a renamed check cannot hide).
// Last line of output: "N passed, N failed"; exit code 1 on any failure.

import assert from 'node:assert/strict';
import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CallToolResultSchema,
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    prefix: { type: 'string', default: '' },
    timeout: { type: 'string', default: '20000' }, // per check, ms
    verbose: { type: 'boolean', default: false },
    skip: { type: 'string', default: '' },
  },
});
if (!opts.url) {
  console.error('usage: node e2e-client.mjs --url http://127.0.0.1:8787/mcp [--prefix everything__]');
  process.exit(2);
}
const URL_ = new URL(opts.url);
const P = opts.prefix;
const n = (name) => `${P}${name}`; // tool / prompt name as the client sees it
const TIMEOUT = Number(opts.timeout);
const reqOpts = { timeout: TIMEOUT };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const textOf = (result) => (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');

// ------------------------------------------------------------ tiny runner
let passed = 0;
let failed = 0;
const toSkip = new Set(opts.skip.split(',').map((s) => s.trim()).filter(Boolean));
const skipped = new Set();
async function check(name, fn) {
  if (toSkip.has(name)) {
    skipped.add(name);
    console.log(`skip - ${name}`);
    return;
  }
  let timer;
  try {
    await Promise.race([
      fn(),
      new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`timed out after ${TIMEOUT} ms`)), TIMEOUT); }),
    ]);
    passed++;
    console.log(`ok   - ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL - ${name}: ${err?.message ?? err}`);
    if (opts.verbose && err?.stack) console.log(err.stack);
  } finally {
    clearTimeout(timer);
  }
}
async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return;
    await sleep(50);
  }
  throw new Error(`did not see ${what} within ${ms} ms`);
}

// ------------------------------------------------------------ HTTP recorder
// Every HTTP exchange the SDK transport makes, to check the wire behaviour
// (SSE responses, session header, standalone GET stream).
const http = [];
const recordingFetch = async (input, init = {}) => {
  const res = await fetch(input, init);
  let body = null;
  try { body = init.body ? JSON.parse(init.body) : null; } catch { /* not json */ }
  http.push({
    method: init.method ?? 'GET',
    rpc: Array.isArray(body) ? 'batch' : body?.method ?? (body ? 'response' : null),
    status: res.status,
    contentType: res.headers.get('content-type') ?? '',
    sessionHeader: res.headers.get('mcp-session-id'),
    sentSession: new Headers(init.headers).get('mcp-session-id'),
  });
  return res;
};

// ------------------------------------------------------------ client
const seen = { sampling: [], elicitation: [], roots: 0, logs: [], updated: [] };
const client = new Client(
  { name: 'palisade-e2e', version: '1.0.0' },
  { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } },
);
client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
  seen.sampling.push(req.params);
  return { role: 'assistant', model: 'palisade-test-model', stopReason: 'endTurn', content: { type: 'text', text: 'sampled-by-palisade-e2e' } };
});
client.setRequestHandler(ElicitRequestSchema, async (req) => {
  seen.elicitation.push(req.params);
  return { action: 'decline' };
});
client.setRequestHandler(ListRootsRequestSchema, async () => {
  seen.roots++;
  return { roots: [{ uri: 'file:///tmp/palisade-e2e-root', name: 'palisade-e2e-root' }] };
});
client.setNotificationHandler(LoggingMessageNotificationSchema, (note) => { seen.logs.push(note.params); });
client.setNotificationHandler(ResourceUpdatedNotificationSchema, (note) => { seen.updated.push(note.params.uri); });
client.onerror = (err) => { if (opts.verbose) console.log(`(client error: ${err?.message ?? err})`); };

const transport = new StreamableHTTPClientTransport(URL_, { fetch: recordingFetch });
let sessionId;
let tools = [];

console.log(`# e2e against ${URL_.href}${P ? ` with prefix '${P}'` : ''}`);

await check('initialize handshake', async () => {
  await client.connect(transport);
  const info = client.getServerVersion();
  assert.ok(info?.name, 'serverInfo.name missing');
  const caps = client.getServerCapabilities();
  for (const c of ['tools', 'prompts', 'resources']) assert.ok(caps?.[c], `server capability '${c}' missing`);
  assert.ok(transport.protocolVersion, 'no negotiated protocol version');
  sessionId = transport.sessionId;
  assert.ok(sessionId, 'server did not assign an Mcp-Session-Id');
});

await check('tools/list returns the everything tools', async () => {
  const want = ['echo', 'get-sum', 'trigger-long-running-operation', 'get-tiny-image', 'get-structured-content',
    'trigger-sampling-request', 'trigger-elicitation-request', 'get-roots-list'].map(n);
  // The capability-dependent tools are registered right after initialization.
  const end = Date.now() + 3000;
  for (;;) {
    tools = (await client.listTools(undefined, reqOpts)).tools;
    const names = tools.map((t) => t.name);
    const missing = want.filter((w) => !names.includes(w));
    if (missing.length === 0) break;
    if (Date.now() > end) throw new Error(`missing tools: ${missing.join(', ')} (got: ${names.join(', ')})`);
    await sleep(200);
  }
  for (const t of tools) {
    assert.ok(t.inputSchema && typeof t.inputSchema === 'object', `tool ${t.name} has no inputSchema`);
    if (P) assert.ok(t.name.startsWith(P), `tool ${t.name} lacks prefix ${P}`);
  }
  const sum = tools.find((t) => t.name === n('get-sum'));
  assert.deepEqual(Object.keys(sum.inputSchema.properties ?? {}).sort(), ['a', 'b'], 'get-sum schema changed');
});

await check('call echo', async () => {
  const r = await client.callTool({ name: n('echo'), arguments: { message: 'hello palisade' } }, undefined, reqOpts);
  assert.ok(!r.isError, `isError: ${textOf(r)}`);
  assert.equal(textOf(r), 'Echo: hello palisade');
});

await check('call get-sum', async () => {
  const r = await client.callTool({ name: n('get-sum'), arguments: { a: 2, b: 40 } }, undefined, reqOpts);
  assert.ok(!r.isError, `isError: ${textOf(r)}`);
  assert.match(textOf(r), /The sum of 2 and 40 is 42\b/);
});

await check('long-running tool streams progress notifications', async () => {
  const progress = [];
  const r = await client.callTool(
    { name: n('trigger-long-running-operation'), arguments: { duration: 1, steps: 4 } },
    CallToolResultSchema,
    { ...reqOpts, onprogress: (p) => progress.push(p) },
  );
  assert.ok(!r.isError, `isError: ${textOf(r)}`);
  assert.match(textOf(r), /Long running operation completed/);
  assert.equal(progress.length, 4, `expected 4 progress notifications, got ${progress.length}`);
  progress.forEach((p, i) => {
    assert.equal(p.progress, i + 1, 'progress values not 1..4 in order');
    assert.equal(p.total, 4, 'progress total not 4');
  });
});

await check('image content passes through', async () => {
  const r = await client.callTool({ name: n('get-tiny-image'), arguments: {} }, undefined, reqOpts);
  const img = r.content.find((c) => c.type === 'image');
  assert.ok(img, 'no image content');
  assert.equal(img.mimeType, 'image/png');
  assert.ok(Buffer.from(img.data, 'base64').subarray(1, 4).toString() === 'PNG', 'image data is not a PNG');
});

await check('structured content and outputSchema pass through', async () => {
  const tool = tools.find((t) => t.name === n('get-structured-content'));
  assert.ok(tool?.outputSchema, 'outputSchema missing from tools/list');
  const r = await client.callTool({ name: n('get-structured-content'), arguments: { location: 'Chicago' } }, undefined, reqOpts);
  assert.deepEqual(r.structuredContent, { temperature: 36, conditions: 'Light rain / drizzle', humidity: 82 });
});

await check('unknown tool is reported as an error', async () => {
  let errored = false;
  try {
    const r = await client.callTool({ name: n('no-such-tool-xyz'), arguments: {} }, undefined, reqOpts);
    errored = r.isError === true;
  } catch {
    errored = true; // JSON-RPC error is fine too
  }
  assert.ok(errored, 'calling an unknown tool did not fail');
});

await check('server->client sampling/createMessage during a tool call', async () => {
  const before = seen.sampling.length;
  const r = await client.callTool({ name: n('trigger-sampling-request'), arguments: { prompt: 'say hi', maxTokens: 20 } }, undefined, reqOpts);
  assert.ok(!r.isError, `isError: ${textOf(r)}`);
  assert.equal(seen.sampling.length, before + 1, 'client sampling handler was not called');
  assert.match(textOf(r), /sampled-by-palisade-e2e/);
});

await check('server->client elicitation/create during a tool call', async () => {
  const before = seen.elicitation.length;
  const r = await client.callTool({ name: n('trigger-elicitation-request'), arguments: {} }, undefined, reqOpts);
  assert.ok(!r.isError, `isError: ${textOf(r)}`);
  assert.equal(seen.elicitation.length, before + 1, 'client elicitation handler was not called');
  assert.ok(seen.elicitation.at(-1).requestedSchema?.properties?.name, 'requestedSchema lost');
  assert.match(textOf(r), /decline/i);
});

await check('server->client roots/list after initialize (on the standalone GET stream)', async () => {
  // server-everything asks for roots ~350 ms after initialization, outside any request
  await waitFor(() => seen.roots > 0, 5000, 'a roots/list request from the server');
});

await check('get-roots-list returns the client roots', async () => {
  // Served from the roots fetched after initialization, or (when that fetch
  // failed) by a roots/list the server sends during this tool call.
  const r = await client.callTool({ name: n('get-roots-list'), arguments: {} }, undefined, reqOpts);
  assert.match(textOf(r), /file:\/\/\/tmp\/palisade-e2e-root/);
});

await check('prompts/list returns the everything prompts', async () => {
  const { prompts } = await client.listPrompts(undefined, reqOpts);
  const names = prompts.map((p) => p.name);
  for (const w of ['simple-prompt', 'args-prompt', 'completable-prompt', 'resource-prompt'].map(n)) {
    assert.ok(names.includes(w), `missing prompt ${w} (got: ${names.join(', ')})`);
  }
  const args = prompts.find((p) => p.name === n('args-prompt')).arguments ?? [];
  assert.deepEqual(args.map((a) => [a.name, !!a.required]), [['city', true], ['state', false]]);
});

await check('prompts/get simple-prompt and args-prompt', async () => {
  const simple = await client.getPrompt({ name: n('simple-prompt') }, reqOpts);
  assert.ok(simple.messages.length > 0 && simple.messages[0].content.type === 'text', 'simple-prompt has no text message');
  const withArgs = await client.getPrompt({ name: n('args-prompt'), arguments: { city: 'Paris', state: 'Texas' } }, reqOpts);
  assert.equal(withArgs.messages[0].content.text, "What's weather in Paris, Texas?");
});

await check('prompts/get resource-prompt embeds a resource', async () => {
  const r = await client.getPrompt({ name: n('resource-prompt'), arguments: { resourceType: 'Text', resourceId: '2' } }, reqOpts);
  const res = r.messages.find((m) => m.content.type === 'resource');
  assert.ok(res, 'no embedded resource message');
  assert.equal(res.content.resource.uri, 'demo://resource/dynamic/text/2');
});

await check('completion/complete on a prompt argument', async () => {
  const r = await client.complete({
    ref: { type: 'ref/prompt', name: n('completable-prompt') },
    argument: { name: 'department', value: 'Eng' },
  }, reqOpts);
  assert.deepEqual(r.completion.values, ['Engineering']);
});

await check('resources/list and resources/read (URIs not renamed)', async () => {
  const { resources } = await client.listResources(undefined, reqOpts);
  const uri = 'demo://resource/static/document/features.md';
  assert.ok(resources.some((r) => r.uri === uri), `missing ${uri} (got ${resources.length} resources)`);
  const r = await client.readResource({ uri }, reqOpts);
  assert.equal(r.contents[0].uri, uri);
  assert.ok(r.contents[0].text?.length > 100, 'resource text missing or short');
});

await check('resource templates: list and read', async () => {
  const { resourceTemplates } = await client.listResourceTemplates(undefined, reqOpts);
  const t = resourceTemplates.map((x) => x.uriTemplate);
  assert.ok(t.includes('demo://resource/dynamic/text/{resourceId}'), `missing text template (got: ${t.join(', ')})`);
  const text = await client.readResource({ uri: 'demo://resource/dynamic/text/7' }, reqOpts);
  assert.match(text.contents[0].text, /^Resource 7: /);
  const blob = await client.readResource({ uri: 'demo://resource/dynamic/blob/7' }, reqOpts);
  assert.ok(blob.contents[0].blob, 'blob resource has no blob');
});

await check('completion/complete on a resource template variable', async () => {
  const r = await client.complete({
    ref: { type: 'ref/resource', uri: 'demo://resource/dynamic/text/{resourceId}' },
    argument: { name: 'resourceId', value: '5' },
  }, reqOpts);
  assert.deepEqual(r.completion.values, ['5']);
});

await check('logging/setLevel', async () => {
  const r = await client.setLoggingLevel('debug', reqOpts);
  assert.deepEqual(Object.keys(r ?? {}).filter((k) => k !== '_meta'), []);
});

await check('resources/subscribe -> notifications/resources/updated', async () => {
  const uri = 'demo://resource/static/document/features.md';
  await client.subscribeResource({ uri }, reqOpts);
  await client.callTool({ name: n('toggle-subscriber-updates'), arguments: {} }, undefined, reqOpts);
  await waitFor(() => seen.updated.includes(uri), 8000, `notifications/resources/updated for ${uri}`);
  await client.callTool({ name: n('toggle-subscriber-updates'), arguments: {} }, undefined, reqOpts); // off again
  await client.unsubscribeResource({ uri }, reqOpts);
  await waitFor(() => seen.logs.some((l) => /Subscribe Resource request/.test(String(l.data))), 3000,
    'the subscribe log notification');
});

await check('ping', async () => {
  const r = await client.ping(reqOpts);
  assert.deepEqual(Object.keys(r ?? {}).filter((k) => k !== '_meta'), []);
});

await check('SSE streaming on the wire', async () => {
  const posts = http.filter((h) => h.method === 'POST' && h.rpc === 'tools/call');
  assert.ok(posts.length > 0, 'no tools/call POST recorded');
  assert.ok(posts.some((h) => h.contentType.includes('text/event-stream')),
    `no tools/call answered as text/event-stream (got: ${[...new Set(posts.map((h) => h.contentType))].join(', ')})`);
  const progressPost = posts.find((h) => h.contentType.includes('text/event-stream'));
  assert.equal(progressPost.status, 200);
  const gets = http.filter((h) => h.method === 'GET');
  assert.ok(gets.some((h) => h.status === 200 && h.contentType.includes('text/event-stream')),
    `standalone GET SSE stream not opened (GETs: ${gets.map((h) => h.status).join(', ') || 'none'})`);
  const afterInit = http.filter((h) => h.rpc !== 'initialize');
  assert.ok(afterInit.every((h) => h.sentSession === sessionId), 'a request went out without the session id');
  const init = http.find((h) => h.rpc === 'initialize');
  assert.equal(init.sessionHeader, sessionId, 'initialize response did not carry Mcp-Session-Id');
});

await check('DELETE ends the session; the old session id is refused', async () => {
  await transport.terminateSession();
  const del = http.filter((h) => h.method === 'DELETE').at(-1);
  assert.ok(del && del.status >= 200 && del.status < 300, `DELETE answered ${del?.status}`);
  const res = await fetch(URL_, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-session-id': sessionId,
      'mcp-protocol-version': transport.protocolVersion ?? '2025-11-25',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 999, method: 'ping' }),
  });
  await res.body?.cancel();
  assert.ok(res.status === 404 || res.status === 400, `stale session got HTTP ${res.status}, want 404 (or 400)`);
});

try { await client.close(); } catch { /* already closed */ }
for (const name of toSkip) {
  if (!skipped.has(name)) {
    failed++;
    console.log(`FAIL - --skip '${name}' matches no check`);
  }
}
if (skipped.size) console.log(`# ${skipped.size} skipped`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
