#!/usr/bin/env node
// A real OpenID provider (panva/oidc-provider) on loopback, for Palisade's OAuth
// resource-server checks (oauth-check.mjs).
//
//   node oidc-idp.mjs [--port 0] [--client-id palisade-test ...] [--client-secret S]
//                     [--scope mcp:tools] [--ttl 300] [--quiet]
//
// Issuer: http://127.0.0.1:<port> (--port 0 picks a free port). Prints
// "oidc-provider issuer http://127.0.0.1:<port>" on stdout when it accepts requests.
//
// - Confidential clients (one per --client-id, all with --client-secret;
//   client_secret_basic or _post) allowed ONLY the client_credentials grant, scope --scope.
// - RFC 8707 resource indicators: a token request with resource=<URI> yields an
//   RS256-signed JWT access token (header typ "at+jwt", aud = that URI exactly,
//   scope, client_id, sub = the client id). Any absolute http(s) URI without a
//   fragment is accepted as a resource server (so a test can ask for a token for
//   ANOTHER resource). Without a resource parameter the token is opaque.
// - Token introspection (RFC 7662) is enabled at /token/introspection.
// - Keys are generated at start-up and live only in memory: RSA (RS256, the one
//   access tokens are signed with), EC P-256 (ES256), Ed25519 (alg "Ed25519", RFC 9864
//   name) for signing, and RSA (RSA-OAEP-256) and X25519 (ECDH-ES) encryption keys,
//   all published at /jwks, so the JWKS is as mixed as a real IdP's.

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { parseArgs } from 'node:util';
import Provider from 'oidc-provider';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    'client-id': { type: 'string', multiple: true, default: ['palisade-test'] },
    'client-secret': { type: 'string', default: 'palisade-test-secret' },
    scope: { type: 'string', default: 'mcp:tools' },
    ttl: { type: 'string', default: '300' }, // access token lifetime, seconds
    quiet: { type: 'boolean', default: false },
  },
});
const log = (...a) => { if (!opts.quiet) console.error('[oidc-idp]', ...a); };

function privateJwk(type, params, alg, use = 'sig') {
  const { privateKey } = generateKeyPairSync(type, params);
  return { ...privateKey.export({ format: 'jwk' }), kid: `${alg.toLowerCase()}-${randomUUID()}`, alg, use };
}
// Like a real IdP's JWKS: several signing algorithms plus encryption keys (which a
// resource server must skip, not choke on).
const keys = [
  privateJwk('rsa', { modulusLength: 2048 }, 'RS256'),
  privateJwk('ec', { namedCurve: 'P-256' }, 'ES256'),
  privateJwk('ed25519', {}, 'Ed25519'),
  privateJwk('rsa', { modulusLength: 2048 }, 'RSA-OAEP-256', 'enc'),
  privateJwk('x25519', {}, 'ECDH-ES', 'enc'),
];

// Bind first: the issuer must name the real port, and --port 0 means "any free one".
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(opts.port), opts.host, resolve);
});
const { port } = server.address();
const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
const issuer = `http://${host}:${port}`;
const TTL = Number(opts.ttl);

const provider = new Provider(issuer, {
  clients: opts['client-id'].map((id) => ({
    client_id: id,
    client_secret: opts['client-secret'],
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: opts.scope,
  })),
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  jwks: { keys },
  scopes: opts.scope.split(' '),
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  ttl: { AccessToken: TTL, ClientCredentials: TTL },
  features: {
    devInteractions: { enabled: false },
    encryption: { enabled: true }, // else oidc-provider refuses the enc keys as "of no use"
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No resource parameter -> no resource server -> an opaque token.
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        const u = URL.parse(resourceIndicator);
        if (!u || !['http:', 'https:'].includes(u.protocol)) {
          throw new Provider.errors.InvalidTarget('resource must be an http(s) URI');
        }
        return {
          scope: opts.scope,
          accessTokenFormat: 'jwt',
          accessTokenTTL: TTL,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});
provider.on('server_error', (_ctx, err) => log('server_error', err));
provider.on('grant.error', (_ctx, err) => log('grant.error', err.message, err.error_description ?? ''));
provider.on('grant.success', (ctx) => log('issued a token to', ctx.oidc.client?.clientId));

server.on('request', provider.callback());
console.log(`oidc-provider issuer ${issuer}`);

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
