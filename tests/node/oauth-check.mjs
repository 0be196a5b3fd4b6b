#!/usr/bin/env node
// Palisade as an OAuth 2.1 resource server, checked with REAL tokens from a real
// OpenID provider (oidc-idp.mjs = panva/oidc-provider) and the official SDK client.
//
//   node oauth-check.mjs --gateway-url http://127.0.0.1:8787/mcp --issuer http://127.0.0.1:9000
//                        --client-id ID --client-secret S
//                        [--other-issuer http://127.0.0.1:9001 ...]   (untrusted providers, same client)
//                        [--second-client-id ID2]                     (same issuer and secret: SESS-03)
//                        [--timeout 10000]
//
// Tokens come from the client_credentials grant with resource=<gateway canonical URI>
// (RFC 8707), at the token endpoint found the way a client finds it: 401 challenge ->
// resource_metadata -> authorization_servers -> the issuer's discovery document.
// Last line: "N passed, N failed"; exit code 1 on any failure.

import assert from 'node:assert/strict';
import { parseArgs } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const { values: opts } = parseArgs({
  options: {
    'gateway-url': { type: 'string' },
    issuer: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'other-issuer': { type: 'string', multiple: true, default: [] },
    'second-client-id': { type: 'string' },
    scope: { type: 'string', default: 'mcp:tools' },
    timeout: { type: 'string', default: '10000' },
    verbose: { type: 'boolean', default: false },
  },
});
for (const k of ['gateway-url', 'issuer', 'client-id', 'client-secret']) {
  if (!opts[k]) {
    console.error('usage: node oauth-check.mjs --gateway-url URL --issuer URL --client-id ID --client-secret S [--other-issuer URL ...] [--second-client-id ID]');
    process.exit(2);
  }
}
const GW = new URL(opts['gateway-url']);
const CANONICAL = `${GW.origin}${GW.pathname.replace(/\/+$/, '')}`; // the token audience
const ISSUER = opts.issuer;
const TIMEOUT = Number(opts.timeout);
const ACCEPT = 'application/json, text/event-stream';
const PRM_PATHS = [
  `/.well-known/oauth-protected-resource${GW.pathname.replace(/\/+$/, '')}`,
  '/.well-known/oauth-protected-resource',
];

// ------------------------------------------------------------ tiny runner
let passed = 0;
let failed = 0;
async function check(name, fn) {
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

// ------------------------------------------------------------ helpers
const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
function decodeJwt(token) {
  const [h, p] = token.split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), payload: JSON.parse(Buffer.from(p, 'base64url')) };
}
const initBody = (id = 1) => JSON.stringify({
  jsonrpc: '2.0',
  id,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'palisade-oauth-check', version: '1.0.0' } },
});

/** Raw POST to the gateway endpoint; returns status, WWW-Authenticate, session id. */
async function post({ token, body = initBody(), session, query = '', headers = {} } = {}) {
  const h = { 'content-type': 'application/json', accept: ACCEPT, ...headers };
  if (token !== undefined) h.authorization = `Bearer ${token}`;
  if (session) {
    h['mcp-session-id'] = session;
    h['mcp-protocol-version'] = '2025-11-25';
  }
  const res = await fetch(`${CANONICAL}${query}`, { method: 'POST', headers: h, body });
  await res.body?.cancel();
  return { status: res.status, www: res.headers.get('www-authenticate') ?? '', session: res.headers.get('mcp-session-id') };
}
async function deleteSession(token, session) {
  const res = await fetch(CANONICAL, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${token}`, 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' },
  });
  await res.body?.cancel();
}
function assertRefused(r, status, error, what) {
  assert.equal(r.status, status, `${what}: HTTP ${r.status}, want ${status} (WWW-Authenticate: ${r.www || 'none'})`);
  assert.match(r.www, /^Bearer /, `${what}: no Bearer challenge`);
  if (error) assert.ok(r.www.includes(`error="${error}"`), `${what}: challenge lacks error="${error}": ${r.www}`);
  assert.ok(r.www.includes('resource_metadata="'), `${what}: challenge lacks resource_metadata: ${r.www}`);
}
async function getJson(url) {
  const res = await fetch(url, { headers: { accept: 'application/json' } });
  const text = await res.text();
  assert.equal(res.status, 200, `GET ${url}: HTTP ${res.status}`);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/, `GET ${url}: content-type`);
  return JSON.parse(text);
}

/** The issuer's token endpoint, by OIDC discovery then RFC 8414. */
const tokenEndpoints = new Map();
async function tokenEndpoint(issuer) {
  if (tokenEndpoints.has(issuer)) return tokenEndpoints.get(issuer);
  const base = issuer.replace(/\/+$/, '');
  let doc;
  for (const u of [`${base}/.well-known/openid-configuration`, `${new URL(issuer).origin}/.well-known/oauth-authorization-server${new URL(issuer).pathname.replace(/\/$/, '')}`]) {
    try { doc = await getJson(u); break; } catch { /* next */ }
  }
  assert.ok(doc, `no discovery document for ${issuer}`);
  assert.equal(doc.issuer, issuer, 'discovery document names another issuer');
  assert.ok(doc.token_endpoint, 'discovery document has no token_endpoint');
  assert.ok((doc.grant_types_supported ?? []).includes('client_credentials'), 'issuer does not offer client_credentials');
  tokenEndpoints.set(issuer, doc.token_endpoint);
  return doc.token_endpoint;
}
/** A real access token: client_credentials [+ resource]. */
async function getToken({ issuer = ISSUER, resource = CANONICAL, clientId = opts['client-id'] } = {}) {
  const form = new URLSearchParams({ grant_type: 'client_credentials', scope: opts.scope });
  if (resource !== null) form.set('resource', resource);
  const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(opts['client-secret'])}`).toString('base64');
  const res = await fetch(await tokenEndpoint(issuer), {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: form,
  });
  const body = await res.json();
  assert.equal(res.status, 200, `token request at ${issuer} (resource ${resource}): HTTP ${res.status} ${JSON.stringify(body)}`);
  assert.equal(body.token_type, 'Bearer');
  return body.access_token;
}

// ------------------------------------------------------------ 1. discovery
for (const path of PRM_PATHS) {
  await check(`protected resource metadata at ${path} (AUTH-01/02/03)`, async () => {
    const doc = await getJson(`${GW.origin}${path}`);
    assert.equal(doc.resource, CANONICAL, 'resource is not the canonical URI');
    assert.ok(Array.isArray(doc.authorization_servers) && doc.authorization_servers.includes(ISSUER),
      `authorization_servers ${JSON.stringify(doc.authorization_servers)} lacks ${ISSUER}`);
    for (const other of opts['other-issuer']) {
      assert.ok(!doc.authorization_servers.includes(other), `untrusted ${other} advertised`);
    }
    assert.ok((doc.scopes_supported ?? []).includes(opts.scope), `scopes_supported ${JSON.stringify(doc.scopes_supported)}`);
  });
}

let challengedMetadata;
await check('no token: 401 with a Bearer challenge naming resource_metadata and scope (AUTH-05)', async () => {
  const r = await post();
  assertRefused(r, 401, null, 'no token');
  assert.ok(!r.www.includes('error='), `a request without credentials gets no error code: ${r.www}`);
  assert.ok(r.www.includes(`scope="${opts.scope}"`), `challenge lacks scope: ${r.www}`);
  challengedMetadata = /resource_metadata="([^"]+)"/.exec(r.www)[1];
  assert.equal(challengedMetadata, `${GW.origin}${PRM_PATHS[0]}`);
});

await check('client discovery chain: challenge -> metadata -> issuer -> token endpoint', async () => {
  assert.ok(challengedMetadata, 'no challenge to follow');
  const prm = await getJson(challengedMetadata);
  assert.equal(prm.authorization_servers[0], ISSUER);
  const te = await tokenEndpoint(prm.authorization_servers[0]);
  assert.ok(te.startsWith(ISSUER), `token endpoint ${te}`);
});

// ------------------------------------------------------------ 2. a good token, official SDK client
let token;
await check('the provider issues an RS256 at+jwt for the gateway (aud = canonical URI)', async () => {
  token = await getToken();
  const { header, payload } = decodeJwt(token);
  assert.equal(header.alg, 'RS256');
  assert.equal(header.typ, 'at+jwt');
  assert.ok(header.kid, 'no kid');
  assert.equal(payload.iss, ISSUER);
  assert.equal(payload.aud, CANONICAL);
  assert.equal(payload.client_id, opts['client-id']);
  assert.ok(String(payload.scope).split(' ').includes(opts.scope), `scope ${payload.scope}`);
});

const client = new Client({ name: 'palisade-oauth-check', version: '1.0.0' }, { capabilities: {} });
let transport;
let tools = [];
await check('SDK client initializes through the gateway with the bearer token', async () => {
  assert.ok(token, 'no token');
  transport = new StreamableHTTPClientTransport(GW, { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
  await client.connect(transport);
  assert.ok(transport.sessionId, 'no session id');
  assert.ok(client.getServerVersion()?.name, 'no serverInfo');
});
await check('SDK client lists tools', async () => {
  ({ tools } = await client.listTools(undefined, { timeout: TIMEOUT }));
  assert.ok(tools.length > 0, 'no tools');
});
await check('SDK client calls a tool (echo)', async () => {
  const echo = tools.find((t) => t.name === 'echo' || t.name.endsWith('__echo'));
  assert.ok(echo, `no echo tool among ${tools.map((t) => t.name).join(', ')}`);
  const res = await client.callTool({ name: echo.name, arguments: { message: 'through palisade with a real token' } }, undefined, { timeout: TIMEOUT });
  const text = (res.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
  assert.ok(!res.isError, `tool error: ${text}`);
  assert.match(text, /through palisade with a real token/);
});

const session = transport?.sessionId;
const ping = JSON.stringify({ jsonrpc: '2.0', id: 77, method: 'ping' });
await check('the session without the token: 401 (AUTH-09)', async () => {
  assert.ok(session, 'no session');
  assertRefused(await post({ body: ping, session }), 401, null, 'session, no token');
});
await check('the session with a fresh token of the same client: accepted (SESS-03)', async () => {
  assert.ok(session, 'no session');
  const fresh = await getToken();
  assert.notEqual(fresh, token, 'the provider handed out the same token twice');
  const r = await post({ token: fresh, body: ping, session });
  assert.equal(r.status, 200, `HTTP ${r.status} ${r.www}`);
});
if (opts['second-client-id']) {
  await check('the session with another client\'s valid token: 404 (SESS-03)', async () => {
    assert.ok(session, 'no session');
    const other = await getToken({ clientId: opts['second-client-id'] });
    assert.equal(decodeJwt(other).payload.sub, opts['second-client-id']);
    const r = await post({ token: other, body: ping, session });
    assert.equal(r.status, 404, `HTTP ${r.status}, want 404`);
    // and that client's own initialize is fine
    const own = await post({ token: other });
    assert.equal(own.status, 200, `second client initialize: HTTP ${own.status} ${own.www}`);
    if (own.session) await deleteSession(other, own.session);
  });
}
await check('a token whose aud differs only by a trailing slash: accepted', async () => {
  const t = await getToken({ resource: `${CANONICAL}/` });
  assert.equal(decodeJwt(t).payload.aud, `${CANONICAL}/`);
  const r = await post({ token: t });
  assert.equal(r.status, 200, `HTTP ${r.status} ${r.www}`);
  if (r.session) await deleteSession(t, r.session);
});

// ------------------------------------------------------------ 3. refused tokens
const wrongAud = [
  ['another resource', `${GW.origin}/other`],
  ['the gateway origin without the endpoint path', GW.origin],
  ['another port', `${GW.protocol}//${GW.hostname}:${Number(GW.port || 80) === 1 ? 2 : 1}${GW.pathname}`],
];
for (const [what, resource] of wrongAud) {
  await check(`a real token for ${what} (aud ${resource}): 401 invalid_token (AUTH-07)`, async () => {
    const t = await getToken({ resource });
    assert.equal(decodeJwt(t).payload.aud, resource);
    assertRefused(await post({ token: t }), 401, 'invalid_token', 'wrong aud');
  });
}
await check('an opaque token (no resource indicator): 401 invalid_token', async () => {
  const t = await getToken({ resource: null });
  assert.ok(t.split('.').length !== 3, 'expected an opaque token');
  assertRefused(await post({ token: t }), 401, 'invalid_token', 'opaque');
});
for (const other of opts['other-issuer']) {
  await check(`a real token from another provider ${other} with the right aud: 401 invalid_token (AUTH-08)`, async () => {
    const t = await getToken({ issuer: other });
    const { header, payload } = decodeJwt(t);
    assert.equal(payload.iss, other);
    assert.equal(payload.aud, CANONICAL);
    assert.equal(header.typ, 'at+jwt');
    assertRefused(await post({ token: t }), 401, 'invalid_token', 'untrusted issuer');
  });
  await check(`a token from ${other} relabelled iss=${ISSUER}: 401 invalid_token (AUTH-06/08)`, async () => {
    const t = await getToken({ issuer: other });
    const [h, p, s] = t.split('.');
    const payload = { ...JSON.parse(Buffer.from(p, 'base64url')), iss: ISSUER };
    assertRefused(await post({ token: `${h}.${b64(payload)}.${s}` }), 401, 'invalid_token', 'relabelled iss');
  });
}
await check('a tampered token (sub changed, signature kept): 401 invalid_token (AUTH-06)', async () => {
  const [h, p, s] = token.split('.');
  const payload = { ...JSON.parse(Buffer.from(p, 'base64url')), sub: 'admin' };
  assertRefused(await post({ token: `${h}.${b64(payload)}.${s}` }), 401, 'invalid_token', 'tampered payload');
});
await check('a token with a flipped signature byte: 401 invalid_token (AUTH-06)', async () => {
  const [h, p, s] = token.split('.');
  const sig = Buffer.from(s, 'base64url');
  sig[sig.length - 1] ^= 1;
  assertRefused(await post({ token: `${h}.${p}.${sig.toString('base64url')}` }), 401, 'invalid_token', 'bad signature');
});
await check('the token re-headed alg "none" without a signature: 401 invalid_token (AUTH-06)', async () => {
  const [h, p] = token.split('.');
  const header = { ...JSON.parse(Buffer.from(h, 'base64url')), alg: 'none' };
  assertRefused(await post({ token: `${b64(header)}.${p}.` }), 401, 'invalid_token', 'alg none');
});
await check('the token re-headed typ "JWT" (require_at_jwt): 401 invalid_token', async () => {
  const [h, p, s] = token.split('.');
  const header = { ...JSON.parse(Buffer.from(h, 'base64url')), typ: 'JWT' };
  assertRefused(await post({ token: `${b64(header)}.${p}.${s}` }), 401, 'invalid_token', 'typ JWT');
});

// ------------------------------------------------------------ 4. misplaced credentials
await check('the good token in the query string: 400 invalid_request (AUTH-10)', async () => {
  const r = await post({ query: `?access_token=${encodeURIComponent(token)}` });
  assertRefused(r, 400, 'invalid_request', 'query token');
});
await check('the good token in the query string AND the header: 400 invalid_request (AUTH-10)', async () => {
  const r = await post({ token, query: `?access_token=${encodeURIComponent(token)}` });
  assertRefused(r, 400, 'invalid_request', 'query + header token');
});

// ------------------------------------------------------------ 5. the SDK session still works, then ends
await check('SDK client still works after the refused attempts; DELETE ends the session', async () => {
  assert.ok(transport?.sessionId, 'no session');
  await client.ping({ timeout: TIMEOUT });
  await transport.terminateSession();
  const r = await post({ token, body: ping, session });
  assert.equal(r.status, 404, `ended session: HTTP ${r.status}, want 404`);
});

try { await client.close(); } catch { /* already closed */ }
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
