#!/usr/bin/env node
// Mock OpenID provider for Portcullis' integration tests, built on oauth2-mock-server's OAuth2Server.
//
//   node tests/e2e/mock-idp.mjs [--port N] [--client-id ID] [--sub S] [--email E] [--username U] [--no-iss-param]
//                               [--token-ttl SECONDS]
//                               [--groups N]
//
// Listens on 127.0.0.1 (port 0 = any free port unless --port), signs with a fresh RS256 key, and prints exactly one
// line `MOCK_IDP_ISSUER=http://127.0.0.1:PORT` to stdout once it accepts connections; everything else goes to
// stderr. It exits 0 on SIGTERM/SIGINT, and when its stdin is a pipe that reaches end-of-file, so a test process that
// spawns it with a piped stdin and then dies never leaves it running.
//
// What oauth2-mock-server 8.2.3 does by itself (read from node_modules/oauth2-mock-server/dist), and what this
// script adds on top through the public event hooks (no patching of the package):
//
// - Authorize endpoint: auto-approves. GET /authorize answers a 302 straight to redirect_uri with a random UUID
//   `code` and the `state` (no login form, no user interaction). It checks only that redirect_uri parses as a URL
//   and response_type=code (else it redirects with error=unsupported_response_type). It ignores client_id, never
//   compares redirect_uri with anything, and does not require PKCE or `scope=openid`.
//   ADDED (beforeAuthorizeRedirect): client_id must equal --client-id when given (else error=unauthorized_client),
//   scope must contain `openid` and PKCE must be code_challenge_method=S256 with a 43-char base64url challenge
//   (else error=invalid_request); the code is then remembered with its client_id, redirect_uri and challenge.
// - RFC 9207: the library does NOT add `iss` to the authorization response.
//   ADDED: `iss=<issuer>` on every authorize redirect (success and error), unless --no-iss-param. The discovery
//   document cannot be changed through the hooks, so it does not advertise
//   `authorization_response_iss_parameter_supported`.
// - PKCE: the library stores code_challenge (+method, default "plain"; it accepts "plain" and "S256") per code
//   and, ONLY WHEN the token request carries a `code_verifier`, checks its RFC 7636 syntax and that it matches
//   (SHA-256/base64url for S256); a mismatch gets HTTP 400 {"error":"invalid_request"} from the library itself
//   (not invalid_grant, and this happens before any hook runs, so it cannot be changed here). A token request
//   WITHOUT code_verifier is not checked at all, even if the authorize request had a challenge.
//   ADDED (beforeResponse): for authorization_code, a missing or non-matching code_verifier answers 400
//   {"error":"invalid_grant"}.
// - Codes: the library accepts ANY string as `code` (it never records issued codes), reuse included, and never
//   looks at redirect_uri or client_id at the token endpoint.
//   ADDED (beforeResponse): the code must be one this server issued, less than 60 s ago, not used before; the
//   client_id (HTTP Basic user name or the `client_id` form field) and `redirect_uri` must equal the authorize
//   request's; otherwise 400 {"error":"invalid_grant"}. The client secret is never checked.
// - nonce: YES, the library stores the authorize request's `nonce` per code and puts it into the id_token (once).
// - id_token claims from the library: iss, iat, nbf (iat-10), exp (iat+3600), sub "johndoe", aud = the client id
//   (Basic user name, else the `client_id` form field; absent if neither), nonce; header kid, typ JWT, alg RS256.
//   No azp, email or name. Access token (also a JWT): iss, iat, nbf, exp, sub "johndoe", amr ["pwd"], scope (the
//   token request's `scope`, default "dummy"), no aud. Claims are changed with the `beforeTokenSigning`
//   (token, req) event, which fires for the access token first and then for the id_token; the id_token's payload
//   is the one without `scope`.
//   ADDED (beforeTokenSigning): both tokens get sub = --sub (default "mock-user-1"); the id_token gets
//   aud = azp = --client-id (default: the requesting client id), email (default "mock.user@example.test"),
//   email_verified true, preferred_username (default "mock.user"), name "Mock User"; the access token gets
//   client_id. /userinfo (beforeUserinfo) answers the same sub/email/preferred_username/name. With --groups N
//   (default 0: none) the id_token also carries a `groups` claim of N names, as directory-backed providers send
//   them: bench/binary.sh uses it for a session cookie of the size such providers produce (about 4 KB).
// - Token lifetime: the library signs every token with exp = iat + 3600 and answers expires_in 3600, fixed.
//   ADDED (--token-ttl SECONDS, 1-86400): the access token gets exp = iat + SECONDS (beforeTokenSigning) and a
//   successful token response expires_in SECONDS (beforeResponse), for authorization_code and refresh_token alike,
//   so a client refreshes every few seconds (the soak, bench/soak.sh). The id_token keeps the library's hour.
// - refresh_token grant: YES, the library answers it (grant_type=refresh_token) with a new access token, a new
//   id_token (sub, aud, no nonce; the claims above added by the same hook) and a new random refresh_token, but it
//   accepts ANY refresh_token string (it never records the ones it issued) and checks no client_id. Nothing is
//   added here: a refresh always succeeds.
// - Discovery (/.well-known/openid-configuration) lists code_challenge_methods_supported ["plain","S256"],
//   token_endpoint_auth_methods_supported ["none"], response_types_supported ["code"], RS256 only, end_session,
//   revocation and introspection endpoints. Endpoints: /authorize /token /jwks /userinfo /revoke /endsession
//   /introspect. The library would advertise `http://localhost:PORT` as issuer; this script sets it to
//   `http://127.0.0.1:PORT` so that it is exactly the URL printed.
// - Errors thrown by the library's assertions become HTTP 400 {"error":"invalid_request","error_description":..}.

import { createHash } from 'node:crypto';
import { fstatSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { OAuth2Server } = await import('oauth2-mock-server').catch((error) => {
  process.stderr.write(
    `mock-idp: cannot load oauth2-mock-server (${error.code ?? error.message}): ` +
      'run `npm ci` in tests/e2e, or tests/run-all.sh --deps-only\n',
  );
  process.exit(3);
});

const CODE_LIFETIME_MS = 60_000;
const SHUTDOWN_GRACE_MS = 2_000;

const { values: options } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'client-id': { type: 'string' },
    sub: { type: 'string', default: 'mock-user-1' },
    email: { type: 'string', default: 'mock.user@example.test' },
    username: { type: 'string', default: 'mock.user' },
    'no-iss-param': { type: 'boolean', default: false },
    'token-ttl': { type: 'string' },
    groups: { type: 'string', default: '0' },
  },
  strict: true,
});

const port = Number.parseInt(options.port, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`mock-idp: invalid --port '${options.port}'\n`);
  process.exit(2);
}
const expectedClientId = options['client-id'];
const MAX_TOKEN_TTL_SECONDS = 86_400;
const tokenTtl = options['token-ttl'] === undefined ? undefined : Number(options['token-ttl']);
if (tokenTtl !== undefined && !(/^[0-9]+$/.test(options['token-ttl']) && tokenTtl >= 1 && tokenTtl <= MAX_TOKEN_TTL_SECONDS)) {
  process.stderr.write(`mock-idp: invalid --token-ttl '${options['token-ttl']}' (whole seconds, 1-${MAX_TOKEN_TTL_SECONDS})\n`);
  process.exit(2);
}
const groupCount = Number.parseInt(options.groups, 10);
if (!Number.isInteger(groupCount) || groupCount < 0 || groupCount > 1000) {
  process.stderr.write(`mock-idp: invalid --groups '${options.groups}'\n`);
  process.exit(2);
}
const groups = Array.from({ length: groupCount }, (_, index) => `app-${String(index).padStart(3, '0')}-readers`);

function log(message) {
  process.stderr.write(`mock-idp: ${message}\n`);
}

/** Codes issued by /authorize that have not been redeemed yet: code -> { clientId, redirectUri, challenge, issuedAt }. */
const pendingGrants = new Map();

function base64UrlSha256(text) {
  return createHash('sha256').update(text, 'ascii').digest('base64url');
}

/** The client id of a token request: the HTTP Basic user name (form-urlencoded, RFC 6749 2.3.1) or the form field. */
function requestingClientId(req) {
  const header = req.headers.authorization ?? '';
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (match) {
    const decoded = Buffer.from(match[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const user = colon === -1 ? decoded : decoded.slice(0, colon);
    try {
      return decodeURIComponent(user.replace(/\+/g, ' '));
    } catch {
      return user;
    }
  }
  return typeof req.body?.client_id === 'string' ? req.body.client_id : undefined;
}

/** Why an authorization_code token request must be refused, or undefined when it is acceptable. */
function tokenRequestProblem(body, clientId) {
  const code = typeof body.code === 'string' ? body.code : undefined;
  const grant = code === undefined ? undefined : pendingGrants.get(code);
  if (grant === undefined) return 'unknown or already redeemed authorization code';
  pendingGrants.delete(code);
  if (Date.now() - grant.issuedAt > CODE_LIFETIME_MS) return 'authorization code expired';
  if (clientId !== grant.clientId) return 'client_id does not match the authorization request';
  if (body.redirect_uri !== grant.redirectUri) return 'redirect_uri does not match the authorization request';
  if (typeof body.code_verifier !== 'string') return 'code_verifier missing';
  if (base64UrlSha256(body.code_verifier) !== grant.challenge) return 'code_verifier does not match code_challenge';
  return undefined;
}

function redirectWithError(url, error, description) {
  url.searchParams.delete('code');
  url.searchParams.set('error', error);
  url.searchParams.set('error_description', description);
}

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
const service = server.service;

service.on('beforeAuthorizeRedirect', ({ url }, req) => {
  const query = req.query ?? {};
  const code = url.searchParams.get('code');
  if (code !== null) {
    const clientId = typeof query.client_id === 'string' ? query.client_id : undefined;
    const scopes = typeof query.scope === 'string' ? query.scope.split(' ') : [];
    const challenge = typeof query.code_challenge === 'string' ? query.code_challenge : '';
    if (clientId === undefined || (expectedClientId !== undefined && clientId !== expectedClientId)) {
      redirectWithError(url, 'unauthorized_client', 'unknown client_id');
    } else if (!scopes.includes('openid')) {
      redirectWithError(url, 'invalid_scope', 'scope must include openid');
    } else if (query.code_challenge_method !== 'S256' || !/^[A-Za-z0-9_-]{43}$/.test(challenge)) {
      redirectWithError(url, 'invalid_request', 'PKCE with code_challenge_method=S256 is required');
    } else {
      pendingGrants.set(code, {
        clientId,
        redirectUri: query.redirect_uri,
        challenge,
        issuedAt: Date.now(),
      });
    }
  }
  if (!options['no-iss-param']) url.searchParams.set('iss', server.issuer.url);
  log(`authorize: client_id=${JSON.stringify(query.client_id)} -> ${url.searchParams.get('error') ?? 'code issued'}`);
});

service.on('beforeTokenSigning', (token, req) => {
  const payload = token.payload;
  payload.sub = options.sub;
  const clientId = expectedClientId ?? requestingClientId(req);
  if ('scope' in payload) {
    if (clientId !== undefined) payload.client_id = clientId;
    if (tokenTtl !== undefined) payload.exp = payload.iat + tokenTtl;
    return;
  }
  // The id_token: the only token the library builds without a scope claim.
  if (clientId !== undefined) {
    payload.aud = clientId;
    payload.azp = clientId;
  }
  payload.email = options.email;
  payload.email_verified = true;
  payload.preferred_username = options.username;
  payload.name = 'Mock User';
  if (groups.length > 0) payload.groups = groups;
});

service.on('beforeResponse', (response, req) => {
  const body = req.body ?? {};
  if (body.grant_type === 'authorization_code') {
    const problem = tokenRequestProblem(body, requestingClientId(req));
    if (problem !== undefined) {
      response.statusCode = 400;
      response.body = { error: 'invalid_grant', error_description: problem };
    }
  }
  if (tokenTtl !== undefined && response.statusCode === 200 && 'access_token' in response.body) {
    response.body.expires_in = tokenTtl;
  }
  log(`token: grant_type=${JSON.stringify(body.grant_type)} -> ${response.statusCode}`);
});

service.on('beforeUserinfo', (response) => {
  response.body = {
    sub: options.sub,
    email: options.email,
    email_verified: true,
    preferred_username: options.username,
    name: 'Mock User',
  };
});

let stopping = false;
async function shutdown(reason) {
  if (stopping) return;
  stopping = true;
  log(`stopping (${reason})`);
  // Keep-alive connections from a client can hold server.stop() open; do not wait for them forever.
  const grace = setTimeout(() => process.exit(0), SHUTDOWN_GRACE_MS);
  grace.unref();
  try {
    await server.stop();
  } catch (error) {
    log(`stop failed: ${error.message}`);
  }
  process.exit(0);
}

process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

// Watch stdin only when it is a pipe or socket (a parent holding the other end): a terminal should keep it running,
// and /dev/null (stdin of a background job or of CI) would otherwise end it at once.
let stdinIsPipe = false;
try {
  const stat = fstatSync(0);
  stdinIsPipe = stat.isFIFO() || stat.isSocket();
} catch {
  stdinIsPipe = false;
}
if (stdinIsPipe) {
  process.stdin.on('end', () => void shutdown('stdin closed'));
  process.stdin.on('error', () => void shutdown('stdin error'));
  process.stdin.resume();
}

await server.start(port, '127.0.0.1');
server.issuer.url = `http://127.0.0.1:${server.address().port}`;
process.stdout.write(`MOCK_IDP_ISSUER=${server.issuer.url}\n`);
