#!/usr/bin/env node
// SSE resumability check against fixture-server.mjs (directly or through the
// gateway): raw HTTP, protocol 2025-11-25.
//
//   node sse-resume-check.mjs --url http://127.0.0.1:3100/mcp [--prefix fixture__]
//
// 1. POST tools/call test_reconnection -> SSE stream with a priming event
//    (id + retry, empty data); the server closes the stream before the result.
// 2. GET with Last-Event-ID -> the tool result is replayed on the new stream.
// The conformance suite's own server-sse-polling scenario cannot show this:
// it sends MCP-Protocol-Version 2025-03-26, for which the SDK sends no priming
// event and does not close the stream.
// Last line: "N passed, N failed"; exit code 1 on any failure.

import { parseArgs } from 'node:util';
import { EventSourceParserStream } from 'eventsource-parser/stream';

const { values: opts } = parseArgs({
  options: { url: { type: 'string' }, prefix: { type: 'string', default: '' } },
});
if (!opts.url) {
  console.error('usage: node sse-resume-check.mjs --url http://127.0.0.1:3100/mcp [--prefix p]');
  process.exit(2);
}
const url = opts.url;
const PV = '2025-11-25';
let passed = 0;
let failed = 0;
const ok = (name) => { passed++; console.log(`ok   - ${name}`); };
const fail = (name, why) => { failed++; console.log(`FAIL - ${name}: ${why}`); };
const expect = (cond, name, why) => (cond ? ok(name) : fail(name, why));

async function readEvents(res, ms, stopWhen = () => false) {
  const events = [];
  let retry;
  const reader = res.body
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(new EventSourceParserStream({ onRetry: (r) => { retry = r; } }))
    .getReader();
  const timer = setTimeout(() => reader.cancel().catch(() => {}), ms);
  let closedByServer = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) { closedByServer = true; break; }
      events.push(value);
      if (stopWhen(value)) { await reader.cancel(); break; }
    }
  } catch { /* cancelled */ }
  clearTimeout(timer);
  return { events, retry, closedByServer };
}
const isResult = (ev, id) => {
  try { const m = JSON.parse(ev.data); return m.id === id && 'result' in m; } catch { return false; }
};

try {
  const base = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  const init = await fetch(url, {
    method: 'POST', headers: base,
    body: JSON.stringify({
      jsonrpc: '2.0', id: 1, method: 'initialize',
      params: { protocolVersion: PV, capabilities: {}, clientInfo: { name: 'sse-resume-check', version: '1.0.0' } },
    }),
  });
  const sid = init.headers.get('mcp-session-id');
  await init.body?.cancel();
  expect(init.ok && sid, 'initialize returns a session id', `HTTP ${init.status}, session ${sid}`);
  const headers = { ...base, 'mcp-session-id': sid, 'mcp-protocol-version': PV };
  const note = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
  await note.body?.cancel();
  expect(note.status === 202, 'notifications/initialized -> 202', `HTTP ${note.status}`);

  const call = await fetch(url, {
    method: 'POST', headers,
    body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: `${opts.prefix}test_reconnection`, arguments: {} } }),
  });
  const ct = call.headers.get('content-type') ?? '';
  expect(call.ok && ct.includes('text/event-stream'), 'tools/call answered as SSE', `HTTP ${call.status} ${ct}`);
  const first = await readEvents(call, 5000, (ev) => isResult(ev, 7));
  const priming = first.events[0];
  expect(priming && priming.id && priming.data.trim() === '', 'first event is a priming event (id, empty data)',
    JSON.stringify(first.events.slice(0, 2)));
  expect(first.retry !== undefined, 'priming event carries a retry field', 'no retry field');
  const gotEarly = first.events.some((ev) => isResult(ev, 7));
  expect(!gotEarly && first.closedByServer, 'server closed the stream before the result', gotEarly ? 'result arrived on the POST stream' : 'stream not closed by server');
  const lastId = first.events.filter((ev) => ev.id).at(-1)?.id;

  if (lastId) {
    const resume = await fetch(url, {
      method: 'GET',
      headers: { accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': PV, 'last-event-id': lastId },
    });
    expect(resume.ok, 'GET with Last-Event-ID accepted', `HTTP ${resume.status}`);
    if (resume.ok) {
      const second = await readEvents(resume, 5000, (ev) => isResult(ev, 7));
      const res = second.events.find((ev) => isResult(ev, 7));
      expect(res && res.id, 'tool result replayed on the resumed stream (with an event id)', JSON.stringify(second.events));
    }
  } else {
    fail('GET with Last-Event-ID accepted', 'no event id seen to resume from');
  }
  const del = await fetch(url, { method: 'DELETE', headers: { 'mcp-session-id': sid, 'mcp-protocol-version': PV } });
  await del.body?.cancel();
  expect(del.ok, 'DELETE session', `HTTP ${del.status}`);
} catch (err) {
  fail('sse resume check', err?.message ?? String(err));
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
