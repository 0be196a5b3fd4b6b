#!/usr/bin/env node
// Palisade test fixture: an MCP server built with the official TypeScript SDK
// (McpServer + StreamableHTTPServerTransport, stateful sessions) that offers
// every tool, prompt and resource the @modelcontextprotocol/conformance SERVER
// scenarios look for. Used as an upstream behind the gateway and on its own.
//
//   node fixture-server.mjs --port 3100        (or PORT=3100)
//   endpoint: http://127.0.0.1:<port>/mcp
//
// Options:
//   --port N             listen port (0 = pick a free one; default 3100)
//   --host H             bind address (default 127.0.0.1)
//   --allowed-hosts a,b  extra Host/Origin hostnames to accept besides
//                        localhost/127.0.0.1/[::1] (DNS-rebinding allow-list)
//   --json               answer POSTs with plain JSON instead of SSE streams
//   --quiet              no per-request logging on stderr
//
// On start it prints one line to stdout: "fixture listening on http://H:P/mcp".

import { randomUUID } from 'node:crypto';
import { deflateSync, crc32 } from 'node:zlib';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { completable } from '@modelcontextprotocol/sdk/server/completable.js';
import {
  isInitializeRequest,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';

// ---------------------------------------------------------------- options
const { values: opts } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    'allowed-hosts': { type: 'string', default: '' },
    json: { type: 'boolean', default: false },
    quiet: { type: 'boolean', default: false },
  },
});
const PORT = Number(opts.port ?? process.env.PORT ?? 3100);
const HOST = opts.host;
const LOCAL_NAMES = ['localhost', '127.0.0.1', '[::1]'];
const ALLOWED_HOSTNAMES = [
  ...LOCAL_NAMES,
  ...opts['allowed-hosts'].split(',').map((s) => s.trim().toLowerCase()).filter(Boolean),
];
const log = (...a) => { if (!opts.quiet) console.error('[fixture]', ...a); };

// ---------------------------------------------------------------- media
// A 1x1 red PNG and a short silent WAV, built at start-up.
function makePng() {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(1, 0); ihdr.writeUInt32BE(1, 4);
  ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0; // 8-bit RGB
  const raw = Buffer.from([0, 255, 0, 0]); // filter byte + one red pixel
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0)),
  ]).toString('base64');
}
function makeWav(samples = 800, rate = 8000) {
  const h = Buffer.alloc(44);
  h.write('RIFF', 0); h.writeUInt32LE(36 + samples, 4); h.write('WAVE', 8);
  h.write('fmt ', 12); h.writeUInt32LE(16, 16); h.writeUInt16LE(1, 20); h.writeUInt16LE(1, 22);
  h.writeUInt32LE(rate, 24); h.writeUInt32LE(rate, 28); h.writeUInt16LE(1, 32); h.writeUInt16LE(8, 34);
  h.write('data', 36); h.writeUInt32LE(samples, 40);
  return Buffer.concat([h, Buffer.alloc(samples, 128)]).toString('base64');
}
const PNG_B64 = makePng();
const WAV_B64 = makeWav();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- event store
// Per-session in-memory store so a client can resume an SSE stream with
// Last-Event-ID. Event ids are "<streamId>.<seq>".
class MemoryEventStore {
  #events = []; // { id, streamId, seq, message }
  #seq = 0;
  async storeEvent(streamId, message) {
    const seq = ++this.#seq;
    const id = `${streamId}.${seq}`;
    this.#events.push({ id, streamId, seq, message });
    if (this.#events.length > 5000) this.#events.splice(0, 1000);
    return id;
  }
  async getStreamIdForEventId(eventId) {
    return this.#events.find((e) => e.id === eventId)?.streamId;
  }
  async replayEventsAfter(lastEventId, { send }) {
    const last = this.#events.find((e) => e.id === lastEventId);
    if (!last) return '';
    for (const e of this.#events) {
      if (e.streamId !== last.streamId || e.seq <= last.seq) continue;
      // priming events carry an empty object, not a JSON-RPC message
      if (!e.message || Object.keys(e.message).length === 0) continue;
      await send(e.id, e.message);
    }
    return last.streamId;
  }
}

// ---------------------------------------------------------------- server
const LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];
const WATCHED = 'test://watched-resource';

function buildServer() {
  const mcp = new McpServer(
    { name: 'palisade-fixture', version: '1.0.0' },
    {
      capabilities: { logging: {}, completions: {} },
      instructions: 'Palisade conformance fixture server.',
    },
  );
  const state = { level: 'info', subscriptions: new Set(), watchedVersion: 1 };

  // Logging level per session (one McpServer per session); notifications are
  // sent on the calling request's stream so they arrive before its result.
  mcp.server.setRequestHandler(SetLevelRequestSchema, async (req) => {
    state.level = req.params.level;
    return {};
  });
  const logTo = (extra, level, data) => {
    if (LEVELS.indexOf(level) < LEVELS.indexOf(state.level)) return Promise.resolve();
    return extra.sendNotification({
      method: 'notifications/message',
      params: { level, logger: 'palisade-fixture', data },
    });
  };
  const progress = (extra, value, total, message) => {
    const token = extra._meta?.progressToken;
    if (token === undefined) return Promise.resolve();
    return extra.sendNotification({
      method: 'notifications/progress',
      params: { progressToken: token, progress: value, total, ...(message ? { message } : {}) },
    });
  };
  const text = (t) => ({ content: [{ type: 'text', text: t }] });

  // ------------------------------------------------------------ tools
  mcp.registerTool('test_simple_text', {
    description: 'Returns a simple text response',
  }, async () => text('This is a simple text response for testing.'));

  mcp.registerTool('test_image_content', {
    description: 'Returns a 1x1 red PNG image',
  }, async () => ({ content: [{ type: 'image', data: PNG_B64, mimeType: 'image/png' }] }));

  mcp.registerTool('test_audio_content', {
    description: 'Returns a short silent WAV clip',
  }, async () => ({ content: [{ type: 'audio', data: WAV_B64, mimeType: 'audio/wav' }] }));

  mcp.registerTool('test_embedded_resource', {
    description: 'Returns an embedded text resource',
  }, async () => ({
    content: [{
      type: 'resource',
      resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' },
    }],
  }));

  mcp.registerTool('test_multiple_content_types', {
    description: 'Returns text, image and resource content together',
  }, async () => ({
    content: [
      { type: 'text', text: 'Multiple content types test:' },
      { type: 'image', data: PNG_B64, mimeType: 'image/png' },
      {
        type: 'resource',
        resource: {
          uri: 'test://mixed-content-resource', mimeType: 'application/json',
          text: JSON.stringify({ test: 'data', value: 123 }),
        },
      },
    ],
  }));

  mcp.registerTool('test_tool_with_logging', {
    description: 'Sends three info log notifications while running',
  }, async (extra) => {
    await logTo(extra, 'info', 'Tool execution started');
    await sleep(50);
    await logTo(extra, 'info', 'Tool processing data');
    await sleep(50);
    await logTo(extra, 'info', 'Tool execution completed');
    return text('Tool with logging executed successfully');
  });

  mcp.registerTool('test_error_handling', {
    description: 'Always fails with isError: true',
  }, async () => ({
    isError: true,
    content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }],
  }));

  mcp.registerTool('test_tool_with_progress', {
    description: 'Reports progress 0/100, 50/100, 100/100',
  }, async (extra) => {
    await progress(extra, 0, 100, 'started');
    await sleep(50);
    await progress(extra, 50, 100, 'half way');
    await sleep(50);
    await progress(extra, 100, 100, 'done');
    return text(`Progress tool completed (token: ${extra._meta?.progressToken ?? 'none'})`);
  });

  mcp.registerTool('test_sampling', {
    description: 'Asks the client for an LLM completion (sampling/createMessage)',
    inputSchema: { prompt: z.string().describe('The prompt to send to the LLM') },
  }, async ({ prompt }, extra) => {
    const res = await mcp.server.createMessage({
      messages: [{ role: 'user', content: { type: 'text', text: prompt } }],
      maxTokens: 100,
    }, { relatedRequestId: extra.requestId });
    const out = Array.isArray(res.content)
      ? res.content.map((c) => c.text ?? `[${c.type}]`).join(' ')
      : (res.content?.text ?? `[${res.content?.type}]`);
    return text(`LLM response: ${out}`);
  });

  mcp.registerTool('test_elicitation', {
    description: 'Asks the user for a username and email (elicitation/create)',
    inputSchema: { message: z.string().describe('The message to show the user') },
  }, async ({ message }, extra) => {
    const res = await mcp.server.elicitInput({
      message,
      requestedSchema: {
        type: 'object',
        properties: {
          username: { type: 'string', description: "User's response" },
          email: { type: 'string', description: "User's email address" },
        },
        required: ['username', 'email'],
      },
    }, { relatedRequestId: extra.requestId });
    return text(`User response: action=${res.action}, content=${JSON.stringify(res.content ?? {})}`);
  });

  mcp.registerTool('test_elicitation_sep1034_defaults', {
    description: 'Elicitation whose schema carries defaults for every primitive type (SEP-1034)',
  }, async (extra) => {
    const res = await mcp.server.elicitInput({
      message: 'Please review your profile (defaults supplied)',
      requestedSchema: {
        type: 'object',
        properties: {
          name: { type: 'string', description: 'User name', default: 'John Doe' },
          age: { type: 'integer', description: 'User age', default: 30 },
          score: { type: 'number', description: 'User score', default: 95.5 },
          status: { type: 'string', description: 'User status', enum: ['active', 'inactive', 'pending'], default: 'active' },
          verified: { type: 'boolean', description: 'Verification status', default: true },
        },
        required: [],
      },
    }, { relatedRequestId: extra.requestId });
    return text(`Elicitation completed: action=${res.action}, content=${JSON.stringify(res.content ?? {})}`);
  });

  mcp.registerTool('test_elicitation_sep1330_enums', {
    description: 'Elicitation using all five enum schema variants (SEP-1330)',
  }, async (extra) => {
    const res = await mcp.server.elicitInput({
      message: 'Pick some options',
      requestedSchema: {
        type: 'object',
        properties: {
          untitledSingle: { type: 'string', description: 'Untitled single-select', enum: ['option1', 'option2', 'option3'] },
          titledSingle: {
            type: 'string', description: 'Titled single-select',
            oneOf: [
              { const: 'value1', title: 'First Option' },
              { const: 'value2', title: 'Second Option' },
              { const: 'value3', title: 'Third Option' },
            ],
          },
          legacyEnum: {
            type: 'string', description: 'Legacy titled enum',
            enum: ['opt1', 'opt2', 'opt3'], enumNames: ['Option One', 'Option Two', 'Option Three'],
          },
          untitledMulti: {
            type: 'array', description: 'Untitled multi-select',
            items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
          },
          titledMulti: {
            type: 'array', description: 'Titled multi-select',
            items: {
              anyOf: [
                { const: 'value1', title: 'First Choice' },
                { const: 'value2', title: 'Second Choice' },
                { const: 'value3', title: 'Third Choice' },
              ],
            },
          },
        },
        required: [],
      },
    }, { relatedRequestId: extra.requestId });
    return text(`Elicitation completed: action=${res.action}, content=${JSON.stringify(res.content ?? {})}`);
  });

  // JSON Schema 2020-12 keywords must survive tools/list untouched (SEP-1613).
  const addressJson = { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } };
  mcp.registerTool('json_schema_2020_12_tool', {
    description: 'Tool with JSON Schema 2020-12 features',
    inputSchema: z.object({
      name: z.string().optional(),
      address: z.object({ street: z.string().optional(), city: z.string().optional() })
        .optional().meta({ $ref: '#/$defs/address' }),
    }).strict().meta({
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      $defs: { address: addressJson },
    }),
  }, async (args) => text(`Received: ${JSON.stringify(args)}`));

  // SSE polling (SEP-1699): close the POST stream mid-call, answer later; the
  // client picks the result up with GET + Last-Event-ID.
  mcp.registerTool('test_reconnection', {
    description: 'Closes the SSE stream mid-call to test client reconnection',
  }, async (extra) => {
    await sleep(100);
    if (extra.closeSSEStream) extra.closeSSEStream();
    await sleep(300);
    return text('Reconnection test completed successfully');
  });

  // Extra helper (not used by the suite): bump the watched resource and send
  // notifications/resources/updated to subscribers.
  mcp.registerTool('test_update_watched_resource', {
    description: 'Changes test://watched-resource and notifies subscribers',
  }, async () => {
    state.watchedVersion += 1;
    if (state.subscriptions.has(WATCHED)) await mcp.server.sendResourceUpdated({ uri: WATCHED });
    return text(`watched resource now at version ${state.watchedVersion}`);
  });

  // ------------------------------------------------------------ resources
  mcp.registerResource('static-text', 'test://static-text', {
    description: 'A static text resource', mimeType: 'text/plain',
  }, async (uri) => ({
    contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }],
  }));

  mcp.registerResource('static-binary', 'test://static-binary', {
    description: 'A static binary (PNG) resource', mimeType: 'image/png',
  }, async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'image/png', blob: PNG_B64 }] }));

  mcp.registerResource('watched-resource', WATCHED, {
    description: 'A resource that can be subscribed to', mimeType: 'text/plain',
  }, async (uri) => ({
    contents: [{ uri: uri.href, mimeType: 'text/plain', text: `Watched resource version ${state.watchedVersion}` }],
  }));

  mcp.registerResource('template-data', new ResourceTemplate('test://template/{id}/data', {
    list: undefined,
    complete: { id: (v) => ['1', '2', '3', '123'].filter((x) => x.startsWith(v ?? '')) },
  }), {
    description: 'Templated JSON data resource', mimeType: 'application/json',
  }, async (uri, { id }) => ({
    contents: [{
      uri: uri.href, mimeType: 'application/json',
      text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }),
    }],
  }));

  mcp.server.registerCapabilities({ resources: { subscribe: true, listChanged: true } });
  mcp.server.setRequestHandler(SubscribeRequestSchema, async (req) => {
    state.subscriptions.add(req.params.uri);
    return {};
  });
  mcp.server.setRequestHandler(UnsubscribeRequestSchema, async (req) => {
    state.subscriptions.delete(req.params.uri);
    return {};
  });

  // ------------------------------------------------------------ prompts
  mcp.registerPrompt('test_simple_prompt', {
    description: 'A simple prompt without arguments',
  }, async () => ({
    messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }],
  }));

  const suggest = (words) => (value) => words.filter((w) => w.startsWith(value ?? ''));
  mcp.registerPrompt('test_prompt_with_arguments', {
    description: 'A prompt with two required arguments',
    argsSchema: {
      arg1: completable(z.string().describe('First test argument'),
        suggest(['paris', 'park', 'party', 'test', 'testing', 'tester'])),
      arg2: completable(z.string().describe('Second test argument'),
        suggest(['hello', 'world', 'test'])),
    },
  }, async ({ arg1, arg2 }) => ({
    messages: [{ role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` } }],
  }));

  mcp.registerPrompt('test_prompt_with_embedded_resource', {
    description: 'A prompt that embeds a resource',
    argsSchema: { resourceUri: z.string().describe('URI of the resource to embed') },
  }, async ({ resourceUri }) => ({
    messages: [
      {
        role: 'user',
        content: { type: 'resource', resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } },
      },
      { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
    ],
  }));

  mcp.registerPrompt('test_prompt_with_image', {
    description: 'A prompt that includes an image',
  }, async () => ({
    messages: [
      { role: 'user', content: { type: 'image', data: PNG_B64, mimeType: 'image/png' } },
      { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
    ],
  }));

  return mcp;
}

// ---------------------------------------------------------------- HTTP
// createMcpExpressApp({ allowedHosts }) rejects a foreign Host header with 403
// (DNS-rebinding protection); we add the same check for Origin.
const app = createMcpExpressApp({ host: HOST, allowedHosts: ALLOWED_HOSTNAMES });
app.use((req, res, next) => {
  const origin = req.headers.origin;
  if (origin) {
    let hostname = null;
    try { hostname = new URL(origin).hostname.toLowerCase(); } catch { /* invalid */ }
    if (!hostname || !ALLOWED_HOSTNAMES.includes(hostname)) {
      log(`reject Origin ${origin}`);
      res.status(403).json({ jsonrpc: '2.0', error: { code: -32000, message: `Invalid Origin: ${origin}` }, id: null });
      return;
    }
  }
  next();
});

const sessions = new Map(); // sessionId -> { transport, mcp }
const rpcError = (res, status, code, message, id = null) =>
  res.status(status).json({ jsonrpc: '2.0', error: { code, message }, id });

app.post('/mcp', async (req, res) => {
  const sid = req.headers['mcp-session-id'];
  log(`POST sid=${sid ?? '-'} ${Array.isArray(req.body) ? 'batch' : req.body?.method ?? (req.body?.id !== undefined ? 'response' : '?')}`);
  try {
    if (sid) {
      const s = sessions.get(sid);
      if (!s) return rpcError(res, 404, -32001, 'Session not found', req.body?.id ?? null);
      return await s.transport.handleRequest(req, res, req.body);
    }
    if (!isInitializeRequest(req.body)) {
      return rpcError(res, 400, -32000, 'Bad Request: missing Mcp-Session-Id (only initialize may omit it)', req.body?.id ?? null);
    }
    const mcp = buildServer();
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore: new MemoryEventStore(),
      retryInterval: 500,
      enableJsonResponse: opts.json,
      onsessioninitialized: (id) => { sessions.set(id, { transport, mcp }); log(`session ${id} opened`); },
      onsessionclosed: (id) => { log(`session ${id} closed by client`); },
    });
    transport.onclose = () => {
      if (transport.sessionId && sessions.delete(transport.sessionId)) log(`session ${transport.sessionId} removed`);
    };
    await mcp.connect(transport);
    await transport.handleRequest(req, res, req.body);
  } catch (err) {
    log('POST error', err);
    if (!res.headersSent) rpcError(res, 500, -32603, 'Internal server error', req.body?.id ?? null);
  }
});

const withSession = (verb) => async (req, res) => {
  const sid = req.headers['mcp-session-id'];
  log(`${verb} sid=${sid ?? '-'}${req.headers['last-event-id'] ? ` last-event-id=${req.headers['last-event-id']}` : ''}`);
  if (!sid) return rpcError(res, 400, -32000, 'Bad Request: missing Mcp-Session-Id');
  const s = sessions.get(sid);
  if (!s) return rpcError(res, 404, -32001, 'Session not found');
  try {
    await s.transport.handleRequest(req, res);
  } catch (err) {
    log(`${verb} error`, err);
    if (!res.headersSent) rpcError(res, 500, -32603, 'Internal server error');
  }
};
app.get('/mcp', withSession('GET'));
app.delete('/mcp', withSession('DELETE'));

const httpServer = app.listen(PORT, HOST, () => {
  const { port } = httpServer.address();
  const h = HOST.includes(':') ? `[${HOST}]` : HOST;
  console.log(`fixture listening on http://${h}:${port}/mcp`);
});
httpServer.on('error', (err) => {
  console.error(`[fixture] cannot listen on ${HOST}:${PORT}: ${err.message}`);
  process.exit(1);
});

async function shutdown() {
  for (const { transport } of sessions.values()) {
    try { await transport.close(); } catch { /* ignore */ }
  }
  httpServer.close();
  httpServer.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
