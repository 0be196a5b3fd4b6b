#!/usr/bin/env node
// SSE resumability THROUGH the gateway, with fixture-server.mjs as its only
// Streamable HTTP upstream (namespace = false, or pass --prefix fixture__).
// Raw HTTP, protocol 2025-11-25.
//
//   node gateway-sse-resume-check.mjs --url http://127.0.0.1:8787/mcp [--prefix fixture__]
//
// Why not sse-resume-check.mjs: that script expects the SERVER to prime the
// POST stream and then close it before the result (SSE polling). Through the
// gateway there are two separate SSE hops, and the gateway does not poll its
// clients: it keeps the client's stream open and mints its own event IDs
// `<stream>.<seq>`. So this script checks each hop for what it really does:
//
// A. upstream hop: tools/call test_reconnection. The fixture primes its stream
//    and closes it before the result; the gateway must resume the upstream
//    stream itself (GET + Last-Event-ID) and still deliver the result to us.
// B. client hop: tools/call test_tool_with_progress with a progressToken, so the
//    gateway answers with SSE. The first event must be the gateway's priming
//    event (`<stream>.0`, retry, empty data). We drop the connection after the
//    first progress notification; the request goes on upstream (TR-13), and a
//    GET with Last-Event-ID must replay the rest (later progress + the result)
//    with ascending IDs of the same stream and without repeating what we had.
// C. TR-09: Last-Event-ID of a stream that does not exist, and a valid ID
//    presented by ANOTHER session, are both refused (404).
// Last line: "N passed, N failed"; exit code 1 on any failure.

import { parseArgs } from 'node:util';
import { EventSourceParserStream } from 'eventsource-parser/stream';

const { values: opts } = parseArgs({
  options: { url: { type: 'string' }, prefix: { type: 'string', default: '' } },
});
if (!opts.url) {
  console.error('usage: node gateway-sse-resume-check.mjs --url http://127.0.0.1:8787/mcp [--prefix p]');
  process.exit(2);
}
const url = opts.url;
const PV = '2025-11-25';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
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
const parse = (ev) => { try { return JSON.parse(ev.data); } catch { return null; } };
const isResult = (ev, id) => { const m = parse(ev); return m?.id === id && 'result' in m; };
const isProgress = (ev) => parse(ev)?.method === 'notifications/progress';
const splitId = (id) => { const m = /^(\d+)\.(\d+)$/.exec(id ?? ''); return m ? [Number(m[1]), Number(m[2])] : null; };

const base = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
async function openSession(name) {
  const init = await fetch(url, {
    method: 'POST', headers: base,
    body: JSON.stringify({
      jsonrpc: '2.0', id: 1, method: 'initialize',
      params: { protocolVersion: PV, capabilities: {}, clientInfo: { name, version: '1.0.0' } },
    }),
  });
  const sid = init.headers.get('mcp-session-id');
  await init.body?.cancel();
  if (!init.ok || !sid) throw new Error(`initialize: HTTP ${init.status}, session ${sid}`);
  const headers = { ...base, 'mcp-session-id': sid, 'mcp-protocol-version': PV };
  const note = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
  await note.body?.cancel();
  if (note.status !== 202) throw new Error(`notifications/initialized: HTTP ${note.status}`);
  return { sid, headers };
}
const resumeGet = (sid, lastId) => fetch(url, {
  method: 'GET',
  headers: { accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': PV, 'last-event-id': lastId },
});
const tool = (name) => `${opts.prefix}${name}`;

const sessions = [];
try {
  const a = await openSession('gateway-sse-resume-check');
  sessions.push(a.sid);
  ok('initialize + notifications/initialized through the gateway');

  // ---- A. the upstream closes its stream early; the gateway resumes it.
  {
    const call = await fetch(url, {
      method: 'POST', headers: a.headers,
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: tool('test_reconnection'), arguments: {} } }),
    });
    const ct = call.headers.get('content-type') ?? '';
    let result;
    if (ct.includes('text/event-stream')) {
      const r = await readEvents(call, 8000, (ev) => isResult(ev, 7));
      result = parse(r.events.find((ev) => isResult(ev, 7)) ?? { data: 'null' });
    } else {
      result = await call.json().catch(() => null);
    }
    const text = result?.result?.content?.map((c) => c.text).join(' ') ?? '';
    expect(call.ok && result?.id === 7 && 'result' in result && !result.result.isError,
      'upstream closed its SSE stream early; the gateway resumed it and delivered the result',
      `HTTP ${call.status} ${ct}: ${JSON.stringify(result)?.slice(0, 300)}`);
    if (text) console.log(`#   (result text: ${text.slice(0, 80)})`);
  }

  // ---- B. the gateway's own stream: priming, client drop, Last-Event-ID replay.
  let streamId;
  let resumeFrom;
  {
    const call = await fetch(url, {
      method: 'POST', headers: a.headers,
      body: JSON.stringify({
        jsonrpc: '2.0', id: 8, method: 'tools/call',
        params: { name: tool('test_tool_with_progress'), arguments: {}, _meta: { progressToken: 'resume-tok' } },
      }),
    });
    const ct = call.headers.get('content-type') ?? '';
    expect(call.ok && ct.includes('text/event-stream'), 'tools/call with progress answered as SSE', `HTTP ${call.status} ${ct}`);
    // Stop (and drop the connection) at the first progress notification.
    const first = await readEvents(call, 5000, (ev) => isProgress(ev));
    const priming = first.events[0];
    const pid = splitId(priming?.id);
    expect(priming && pid && pid[1] === 0 && priming.data.trim() === '',
      'first event is the gateway priming event (<stream>.0, empty data)', JSON.stringify(first.events.slice(0, 2)));
    expect(first.retry !== undefined, 'priming event carries a retry field', 'no retry field');
    const prog = first.events.find(isProgress);
    expect(prog && splitId(prog.id)?.[0] === pid?.[0] && parse(prog).params?.progressToken === 'resume-tok',
      'progress arrives on the same stream with the client\'s own progressToken', JSON.stringify(first.events));
    expect(!first.events.some((ev) => isResult(ev, 8)), 'connection dropped before the result', 'result already arrived');
    streamId = pid?.[0];
    resumeFrom = prog?.id ?? priming?.id;
  }
  if (resumeFrom) {
    await sleep(400); // the tool finishes meanwhile (it takes ~100 ms); TR-13: not cancelled by the drop
    const resume = await resumeGet(a.sid, resumeFrom);
    expect(resume.ok && (resume.headers.get('content-type') ?? '').includes('text/event-stream'),
      `GET with Last-Event-ID ${resumeFrom} accepted`, `HTTP ${resume.status}`);
    if (resume.ok) {
      const second = await readEvents(resume, 5000, (ev) => isResult(ev, 8));
      const ids = second.events.map((ev) => splitId(ev.id));
      const [, fromSeq] = splitId(resumeFrom);
      const sameStream = ids.every((x) => x && x[0] === streamId);
      const ascending = ids.every((x, i) => x && x[1] > fromSeq && (i === 0 || x[1] > ids[i - 1][1]));
      const res = second.events.find((ev) => isResult(ev, 8));
      const later = second.events.filter(isProgress).map((ev) => parse(ev).params.progress);
      expect(res, 'result replayed on the resumed stream', JSON.stringify(second.events).slice(0, 400));
      expect(sameStream && ascending && ids.length > 0,
        'replayed events continue the same stream, after the Last-Event-ID, in order',
        JSON.stringify(second.events.map((ev) => ev.id)));
      expect(later.includes(100) && !later.includes(0), 'later progress replayed, earlier not repeated',
        `progress values replayed: ${JSON.stringify(later)}`);
    }
  } else {
    fail('GET with Last-Event-ID accepted', 'no event id seen to resume from');
  }

  // ---- C. TR-09: IDs are scoped to their stream and session.
  {
    const bogus = await resumeGet(a.sid, '999999.0');
    await bogus.body?.cancel();
    expect(bogus.status === 404, 'Last-Event-ID of an unknown stream -> 404', `HTTP ${bogus.status}`);
    const b = await openSession('gateway-sse-resume-check-b');
    sessions.push(b.sid);
    if (resumeFrom) {
      const cross = await resumeGet(b.sid, resumeFrom);
      await cross.body?.cancel();
      expect(cross.status === 404, 'another session cannot resume this session\'s stream -> 404', `HTTP ${cross.status}`);
    }
  }
} catch (err) {
  fail('gateway sse resume check', err?.message ?? String(err));
}
for (const sid of sessions) {
  const del = await fetch(url, { method: 'DELETE', headers: { 'mcp-session-id': sid, 'mcp-protocol-version': PV } }).catch((e) => ({ ok: false, status: e.message }));
  await del.body?.cancel?.();
  expect(del.ok, `DELETE session ${sid.slice(0, 8)}…`, `HTTP ${del.status}`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
