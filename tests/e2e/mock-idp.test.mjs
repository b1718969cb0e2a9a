// Checks that mock-idp.mjs is the strict provider the Rust integration tests rely on: S256 PKCE enforced, codes
// single-use and bound to client_id + redirect_uri, the test user's claims, RFC 9207 `iss`, clean exit; with
// --token-ttl, short-lived access tokens and a working refresh_token grant.
//
//   node --test tests/e2e/mock-idp.test.mjs

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

const scriptPath = fileURLToPath(new URL('./mock-idp.mjs', import.meta.url));
const CLIENT_ID = 'portcullis-test';
const REDIRECT_URI = 'http://127.0.0.1:9/oauth2/callback';
const READY_TIMEOUT_MS = 15_000;
const REQUEST_TIMEOUT_MS = 5_000;

let idp;
let issuer;

/** Starts mock-idp.mjs with `args` and resolves to [child, issuer] once it printed its issuer line. */
async function startIdp(args) {
  const child = spawn(process.execPath, [scriptPath, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  child.stdout.setEncoding('utf8');
  const url = await new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => reject(new Error('mock-idp printed no MOCK_IDP_ISSUER line')), READY_TIMEOUT_MS);
    child.stdout.on('data', (chunk) => {
      output += chunk;
      const match = /^MOCK_IDP_ISSUER=(http:\/\/127\.0\.0\.1:\d+)\n/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`mock-idp exited early with ${code}`));
    });
  });
  return [child, url];
}

before(async () => {
  [idp, issuer] = await startIdp(['--client-id', CLIENT_ID]);
});

after(() => {
  if (idp.exitCode === null && idp.signalCode === null) idp.kill('SIGKILL');
});

const base64Url = (bytes) => Buffer.from(bytes).toString('base64url');
const newVerifier = () => base64Url(randomBytes(32));
const challengeOf = (verifier) => base64Url(createHash('sha256').update(verifier).digest());
const decodeJwtPayload = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));

/** Runs /authorize and returns the redirect's query parameters. */
async function authorize(overrides = {}, at = issuer) {
  const params = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT_URI,
    scope: 'openid email profile',
    state: 'state-1',
    nonce: 'nonce-1',
    code_challenge_method: 'S256',
    ...overrides,
  });
  const response = await fetch(`${at}/authorize?${params}`, {
    redirect: 'manual',
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  assert.equal(response.status, 302);
  const location = new URL(response.headers.get('location'));
  assert.equal(location.origin + location.pathname, REDIRECT_URI);
  return location.searchParams;
}

async function token(fields, at = issuer) {
  const response = await fetch(`${at}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, ...fields }),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  return { status: response.status, body: await response.json() };
}

test('discovery names the loopback issuer and S256', async () => {
  const response = await fetch(`${issuer}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  const document = await response.json();
  assert.equal(document.issuer, issuer);
  assert.equal(document.token_endpoint, `${issuer}/token`);
  assert.ok(document.code_challenge_methods_supported.includes('S256'));
});

test('code flow with S256 PKCE yields the test user and the nonce', async () => {
  const verifier = newVerifier();
  const redirect = await authorize({ code_challenge: challengeOf(verifier) });
  assert.equal(redirect.get('state'), 'state-1');
  assert.equal(redirect.get('iss'), issuer);
  const code = redirect.get('code');
  assert.ok(code);

  const { status, body } = await token({ code, code_verifier: verifier });
  assert.equal(status, 200);
  assert.equal(body.token_type, 'Bearer');
  const claims = decodeJwtPayload(body.id_token);
  assert.equal(claims.iss, issuer);
  assert.equal(claims.aud, CLIENT_ID);
  assert.equal(claims.azp, CLIENT_ID);
  assert.equal(claims.sub, 'mock-user-1');
  assert.equal(claims.email, 'mock.user@example.test');
  assert.equal(claims.nonce, 'nonce-1');
  assert.equal(decodeJwtPayload(body.access_token).sub, 'mock-user-1');

  const replay = await token({ code, code_verifier: verifier });
  assert.equal(replay.status, 400, 'a code is single-use');
});

test('a missing or wrong code_verifier is refused', async () => {
  const verifier = newVerifier();
  const missing = await token({ code: (await authorize({ code_challenge: challengeOf(verifier) })).get('code') });
  assert.deepEqual([missing.status, missing.body.error], [400, 'invalid_grant']);
  const wrong = await token({
    code: (await authorize({ code_challenge: challengeOf(verifier) })).get('code'),
    code_verifier: newVerifier(),
  });
  assert.equal(wrong.status, 400);
  assert.ok(['invalid_grant', 'invalid_request'].includes(wrong.body.error));
});

test('the code is bound to redirect_uri and client_id', async () => {
  const verifier = newVerifier();
  const otherRedirect = await token({
    code: (await authorize({ code_challenge: challengeOf(verifier) })).get('code'),
    code_verifier: verifier,
    redirect_uri: 'http://127.0.0.1:9/elsewhere',
  });
  assert.deepEqual([otherRedirect.status, otherRedirect.body.error], [400, 'invalid_grant']);
  const otherClient = await token({
    code: (await authorize({ code_challenge: challengeOf(verifier) })).get('code'),
    code_verifier: verifier,
    client_id: 'someone-else',
  });
  assert.deepEqual([otherClient.status, otherClient.body.error], [400, 'invalid_grant']);
});

test('authorize without S256 PKCE or with another client is refused', async () => {
  const plain = await authorize({ code_challenge: newVerifier(), code_challenge_method: 'plain' });
  assert.equal(plain.get('code'), null);
  assert.equal(plain.get('error'), 'invalid_request');
  const noPkce = await authorize({ code_challenge_method: '' });
  assert.equal(noPkce.get('error'), 'invalid_request');
  const stranger = await authorize({ client_id: 'someone-else', code_challenge: challengeOf(newVerifier()) });
  assert.equal(stranger.get('error'), 'unauthorized_client');
});

test('--token-ttl shortens access tokens, and the refresh_token grant renews them', async () => {
  const [shortIdp, shortIssuer] = await startIdp(['--client-id', CLIENT_ID, '--token-ttl', '7']);
  try {
    const verifier = newVerifier();
    const code = (await authorize({ code_challenge: challengeOf(verifier) }, shortIssuer)).get('code');
    const login = await token({ code, code_verifier: verifier }, shortIssuer);
    assert.equal(login.status, 200);
    assert.equal(login.body.expires_in, 7);
    const access = decodeJwtPayload(login.body.access_token);
    assert.equal(access.exp - access.iat, 7);
    const idToken = decodeJwtPayload(login.body.id_token);
    assert.equal(idToken.exp - idToken.iat, 3600, 'the id_token keeps its hour');
    assert.ok(login.body.refresh_token);

    const refresh = await token({ grant_type: 'refresh_token', refresh_token: login.body.refresh_token }, shortIssuer);
    assert.equal(refresh.status, 200);
    assert.equal(refresh.body.expires_in, 7);
    const renewed = decodeJwtPayload(refresh.body.access_token);
    assert.equal(renewed.exp - renewed.iat, 7);
    assert.equal(renewed.sub, 'mock-user-1');
    assert.ok(refresh.body.refresh_token && refresh.body.refresh_token !== login.body.refresh_token, 'rotated');
    const refreshedIdToken = decodeJwtPayload(refresh.body.id_token);
    assert.equal(refreshedIdToken.iss, shortIssuer);
    assert.equal(refreshedIdToken.sub, 'mock-user-1');
    assert.equal(refreshedIdToken.aud, CLIENT_ID);
    assert.equal(refreshedIdToken.nonce, undefined);

    const plain = await token({ code: 'none', code_verifier: verifier });
    assert.equal(plain.status, 400, 'the other provider is unaffected');
  } finally {
    shortIdp.kill('SIGKILL');
  }
});

test('--token-ttl refuses a value that is not whole seconds in range', async () => {
  for (const bad of ['0', '1.5', '-3', 'abc', '86401']) {
    const child = spawn(process.execPath, [scriptPath, `--token-ttl=${bad}`], { stdio: ['pipe', 'ignore', 'ignore'] });
    const code = await new Promise((resolve) => child.once('exit', resolve));
    assert.equal(code, 2, `--token-ttl ${bad}`);
  }
});

test('closing stdin stops the provider with status 0', async () => {
  const exited = new Promise((resolve) => idp.once('exit', (code, signal) => resolve({ code, signal })));
  idp.stdin.end();
  let timer;
  const status = await Promise.race([
    exited,
    new Promise((resolve) => {
      timer = setTimeout(() => resolve('still running'), READY_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  assert.deepEqual(status, { code: 0, signal: null });
});
