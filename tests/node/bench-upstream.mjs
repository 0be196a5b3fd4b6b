#!/usr/bin/env node
// Palisade load-harness upstream: the smallest ordinary MCP server built with the
// official TypeScript SDK (McpServer + StreamableHTTPServerTransport behind the SDK's
// Express app, stateful sessions, SSE answers as the SDK sends by default) with one
// tool, `payload`, whose result is a text of --result-bytes bytes. `palisade-bench
// --sdk-upstream` starts it to measure the gateway in front of a real MCP server.
//
//   node bench-upstream.mjs --port 3200 [--result-bytes 4096]
//
// On start it prints one line to stdout: "bench upstream listening on http://127.0.0.1:P/mcp".

import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: '3200' },
    'result-bytes': { type: 'string', default: '4096' },
  },
});
const HOST = '127.0.0.1';
const payload = 'x'.repeat(Number(opts['result-bytes']));

function buildServer() {
  const mcp = new McpServer({ name: 'bench-sdk-upstream', version: '1' });
  mcp.registerTool('payload', { description: 'Returns a fixed text.' }, async () => ({
    content: [{ type: 'text', text: payload }],
  }));
  return mcp;
}

const app = createMcpExpressApp({ host: HOST });
const sessions = new Map(); // sessionId -> transport
const rpcError = (res, status, code, message) =>
  res.status(status).json({ jsonrpc: '2.0', error: { code, message }, id: null });

app.post('/mcp', async (req, res) => {
  const sid = req.headers['mcp-session-id'];
  if (sid) {
    const transport = sessions.get(sid);
    if (!transport) return rpcError(res, 404, -32001, 'Session not found');
    return transport.handleRequest(req, res, req.body);
  }
  if (!isInitializeRequest(req.body)) {
    return rpcError(res, 400, -32000, 'Bad Request: missing Mcp-Session-Id');
  }
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    onsessioninitialized: (id) => sessions.set(id, transport),
  });
  transport.onclose = () => {
    if (transport.sessionId) sessions.delete(transport.sessionId);
  };
  await buildServer().connect(transport);
  await transport.handleRequest(req, res, req.body);
});
const withSession = async (req, res) => {
  const transport = sessions.get(req.headers['mcp-session-id'] ?? '');
  if (!transport) return rpcError(res, 404, -32001, 'Session not found');
  await transport.handleRequest(req, res);
};
app.get('/mcp', withSession);
app.delete('/mcp', withSession);

const httpServer = app.listen(Number(opts.port), HOST, () => {
  console.log(`bench upstream listening on http://${HOST}:${httpServer.address().port}/mcp`);
});
const stop = () => {
  httpServer.close();
  httpServer.closeAllConnections?.();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
