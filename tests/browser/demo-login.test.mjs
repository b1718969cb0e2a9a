// Browser test of the whole login flow: a real headless Chromium against `portcullis demo` (gateway + two loopback
// development OpenID providers, "Staff" and "Partners" + echo upstream, all on 127.0.0.1).
//
//   node --test tests/browser/*.test.mjs
//
// TEST_PORTCULLIS_BIN picks the binary (default: target/debug/portcullis under the repo root); TEST_CHROMIUM the
// browser (default: /usr/bin/chromium). A missing binary or browser makes the tests FAIL, never skip.
// A screenshot of the echo page is written to tests/browser/test-results/ for humans.

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from '../e2e/node_modules/playwright-core/index.mjs';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const resultsDir = fileURLToPath(new URL('./test-results/', import.meta.url));
const binaryPath = path.resolve(repoRoot, process.env.TEST_PORTCULLIS_BIN ?? 'target/debug/portcullis');
const chromiumPath = process.env.TEST_CHROMIUM ?? '/usr/bin/chromium';

const READY_TIMEOUT_MS = 30_000;
const EXIT_TIMEOUT_MS = 10_000;
const STEP_TIMEOUT_MS = 15_000;
const TEST_TIMEOUT_MS = 90_000;
const READY_LINE = /open (http:\/\/127\.0\.0\.1:\d+\/)/;
// One session cookie per provider: `_portcullis_staff`, `_portcullis_partners` (`__Host-` over https); the flow
// cookies (`_portcullis_flow_...`) are not sessions.
const SESSION_COOKIE = /^(__Host-)?_portcullis(_(staff|partners))?$/;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** Keeps the last `limit` characters of a child's output, for failure messages. */
function tailBuffer(limit = 4000) {
  let text = '';
  return {
    push(chunk) {
      text = (text + chunk).slice(-limit);
    },
    get text() {
      return text;
    },
  };
}

/** Spawns `portcullis demo` and resolves with its URL once it printed the ready line (bounded by READY_TIMEOUT_MS). */
function startDemo() {
  if (!existsSync(binaryPath)) {
    throw new Error(
      `portcullis binary not found at ${binaryPath}: build it with \`cargo build --bin portcullis\` ` +
        'or point TEST_PORTCULLIS_BIN at it',
    );
  }
  const child = spawn(binaryPath, ['demo', '--listen', '127.0.0.1:0'], {
    cwd: repoRoot,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const stdout = tailBuffer();
  const stderr = tailBuffer();
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => stderr.push(chunk));
  child.stdout.setEncoding('utf8');

  const url = new Promise((resolve, reject) => {
    let pending = '';
    const timer = setTimeout(
      () => reject(new Error(`portcullis demo printed no "open http://127.0.0.1:PORT/" line within ${READY_TIMEOUT_MS} ms\n` +
        `stdout: ${stdout.text}\nstderr: ${stderr.text}`)),
      READY_TIMEOUT_MS,
    );
    child.stdout.on('data', (chunk) => {
      stdout.push(chunk);
      pending += chunk;
      const match = READY_LINE.exec(pending);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${binaryPath}: ${error.message}`));
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`portcullis demo exited (code ${code}, signal ${signal}) before it was ready\n` +
        `stdout: ${stdout.text}\nstderr: ${stderr.text}`));
    });
  });
  return { child, url, exited, stderr };
}

/** Sends SIGTERM and waits (bounded) for the exit; SIGKILL if it does not come. Resolves with the exit status. */
async function stopDemo(demo) {
  if (demo.child.exitCode !== null || demo.child.signalCode !== null) return demo.exited;
  demo.child.kill('SIGTERM');
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve(undefined), EXIT_TIMEOUT_MS);
  });
  const status = await Promise.race([demo.exited, timeout]);
  clearTimeout(timer);
  if (status === undefined) {
    demo.child.kill('SIGKILL');
    await demo.exited;
    return { code: null, signal: 'SIGKILL', timedOut: true };
  }
  return status;
}

let demo;
let browser;
let environment;

/** Starts the demo and the browser once; every test awaits it, so a start-up failure fails each test loudly. */
function env() {
  environment ??= (async () => {
    if (!existsSync(chromiumPath)) {
      throw new Error(`Chromium not found at ${chromiumPath}: run tests/run-all.sh --deps-only (apt package chromium)`);
    }
    demo = startDemo();
    const baseUrl = await demo.url;
    // launch() gives every run a fresh temporary user-data dir, removed again by browser.close().
    browser = await chromium.launch({
      executablePath: chromiumPath,
      timeout: READY_TIMEOUT_MS,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    return { baseUrl, browser };
  })();
  return environment;
}

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (demo) await stopDemo(demo);
});

/** A fresh browser context (no cookies) whose every wait is bounded, recording any non-loopback request. */
async function freshPage() {
  const { baseUrl } = await env();
  const context = await browser.newContext();
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  context.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
  const page = await context.newPage();
  const foreignRequests = [];
  page.on('request', (request) => {
    const { hostname, protocol } = new URL(request.url());
    if ((protocol === 'http:' || protocol === 'https:') && !LOOPBACK_HOSTS.has(hostname)) {
      foreignRequests.push(request.url());
    }
  });
  return { baseUrl, context, page, foreignRequests };
}

async function expectLoginForm(page) {
  await page.locator('input[name=username]').waitFor({ state: 'visible' });
  await page.locator('input[name=password]').waitFor({ state: 'visible' });
  await page.locator('button[type=submit]').waitFor({ state: 'visible' });
}

/**
 * Waits for the provider's login form; where the gateway shows its provider chooser first (a route accepting several
 * providers), picks `provider` there.
 */
async function reachLoginForm(page, provider = 'Staff') {
  const form = page.locator('input[name=username]');
  const choice = page.getByRole('button', { name: provider }).or(page.getByRole('link', { name: provider }));
  await form.or(choice).first().waitFor({ state: 'visible' });
  if (!(await form.isVisible())) await choice.first().click();
  await expectLoginForm(page);
}

async function signIn(page, username, password, provider = 'Staff') {
  await reachLoginForm(page, provider);
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', password);
  // The caller then waits (bounded) for what the submission must lead to; waitForLoadState here would race.
  await page.click('button[type=submit]');
}

/** Reads the echo page's header table into a Map of lowercase name -> list of values. */
async function echoedHeaders(page) {
  const rows = await page.$$eval('#request-headers tr', (trs) =>
    trs
      .map((tr) => [tr.querySelector('th')?.textContent ?? '', tr.querySelector('td')?.textContent ?? ''])
      .filter(([name]) => name !== ''),
  );
  const headers = new Map();
  for (const [name, value] of rows) {
    const key = name.trim().toLowerCase();
    headers.set(key, [...(headers.get(key) ?? []), value]);
  }
  return headers;
}

async function expectEchoPage(page, expectedPathAndQuery) {
  await page.locator('#path').waitFor({ state: 'visible' });
  assert.equal(await page.title(), 'Echo upstream');
  assert.equal((await page.locator('#path').textContent())?.trim(), expectedPathAndQuery);
}

async function sessionCookies(context) {
  return (await context.cookies()).filter((cookie) => SESSION_COOKIE.test(cookie.name));
}

describe('portcullis demo in a real browser', { timeout: 4 * TEST_TIMEOUT_MS }, () => {
  test('alice signs in and reaches the upstream with identity headers', { timeout: TEST_TIMEOUT_MS }, async () => {
    const { baseUrl, context, page, foreignRequests } = await freshPage();
    try {
      await page.goto(new URL('some/page?x=1', baseUrl).href);
      await signIn(page, 'alice', 'alice');
      await expectEchoPage(page, '/some/page?x=1');

      const landed = new URL(page.url());
      assert.equal(landed.origin, new URL(baseUrl).origin, 'the browser should end on the gateway, not the upstream');
      assert.equal(landed.pathname + landed.search, '/some/page?x=1', 'the original URL should be restored after login');

      const headers = await echoedHeaders(page);
      const forwardedUser = headers.get('x-forwarded-user') ?? [];
      assert.equal(forwardedUser.length, 1, 'exactly one x-forwarded-user header');
      assert.notEqual(forwardedUser[0].trim(), '', 'x-forwarded-user is not empty');
      const forwardedEmail = headers.get('x-forwarded-email') ?? [];
      assert.equal(forwardedEmail.length, 1, 'exactly one x-forwarded-email header');
      assert.match(forwardedEmail[0], /alice/);
      const authorization = headers.get('authorization') ?? [];
      assert.equal(authorization.length, 1, 'exactly one authorization header');
      assert.ok(authorization[0].startsWith('Bearer '), 'authorization is a Bearer token');
      assert.ok(authorization[0].length > 'Bearer '.length + 10, 'the bearer token is not empty');
      for (const cookieHeader of headers.get('cookie') ?? []) {
        assert.ok(!cookieHeader.includes('_portcullis'), 'the session cookie must not reach the upstream');
      }

      const cookies = await sessionCookies(context);
      assert.equal(cookies.length, 1, `one session cookie expected, got: ${cookies.map((c) => c.name).join(', ')}`);
      const [session] = cookies;
      assert.equal(session.httpOnly, true, 'session cookie is HttpOnly');
      assert.equal(session.sameSite, 'Lax', 'session cookie is SameSite=Lax');
      assert.ok(session.value.length >= 16, 'session cookie has a non-trivial value');
      const html = await page.content();
      assert.ok(!html.includes(session.value), 'the session cookie value must not appear in the page');
      assert.ok(!(await page.evaluate(() => document.cookie)).includes('_portcullis'), 'scripts cannot read it');

      assert.deepEqual(foreignRequests, [], 'the browser talked only to loopback addresses');

      mkdirSync(resultsDir, { recursive: true });
      await page.screenshot({ path: path.join(resultsDir, 'echo-page.png'), fullPage: true });
    } finally {
      await context.close();
    }
  });

  test('a wrong password shows the error and creates no session', { timeout: TEST_TIMEOUT_MS }, async () => {
    const { baseUrl, context, page } = await freshPage();
    try {
      await page.goto(new URL('wrong/password', baseUrl).href);
      await signIn(page, 'alice', 'not-alices-password');
      await page.getByText('Invalid username or password').first().waitFor({ state: 'visible' });
      await expectLoginForm(page);
      assert.deepEqual(await sessionCookies(context), [], 'no session cookie after a failed login');
    } finally {
      await context.close();
    }
  });

  test('after sign-out the next protected page asks to log in again', { timeout: TEST_TIMEOUT_MS }, async () => {
    const { baseUrl, context, page } = await freshPage();
    try {
      await page.goto(new URL('before/sign-out', baseUrl).href);
      await signIn(page, 'bob', 'bob');
      await expectEchoPage(page, '/before/sign-out');
      const [before] = await sessionCookies(context);
      assert.ok(before, 'a session cookie exists while signed in');

      await page.goto(new URL('oauth2/sign_out', baseUrl).href);
      const afterSignOut = await sessionCookies(context);
      assert.ok(afterSignOut.every((cookie) => cookie.value !== before.value), 'sign-out drops the session cookie');

      await page.goto(new URL('after/sign-out', baseUrl).href);
      await reachLoginForm(page);
      assert.equal(await page.locator('#path').count(), 0, 'the upstream is not reached without a session');
    } finally {
      await context.close();
    }
  });

  test('carol signs in at Partners, and /admin (Staff only) asks for a Staff login', { timeout: TEST_TIMEOUT_MS }, async () => {
    const { baseUrl, context, page } = await freshPage();
    try {
      await page.goto(new URL('oauth2/start?provider=partners&rd=/partners/page', baseUrl).href);
      await reachLoginForm(page, 'Partners');
      const partnersOrigin = new URL(page.url()).origin;
      await signIn(page, 'carol', 'carol', 'Partners');
      await expectEchoPage(page, '/partners/page');
      const email = (await echoedHeaders(page)).get('x-forwarded-email') ?? [];
      assert.equal(email.length, 1, 'exactly one x-forwarded-email header');
      assert.match(email[0], /carol@partners/);
      assert.deepEqual((await sessionCookies(context)).map((cookie) => cookie.name), ['_portcullis_partners']);

      // The Partners session does not open /admin: it goes straight to the Staff provider's login form.
      await page.goto(new URL('admin', baseUrl).href);
      await expectLoginForm(page);
      const loginOrigin = new URL(page.url()).origin;
      assert.notEqual(loginOrigin, partnersOrigin, 'the login for /admin is at the Staff provider, not Partners');
      assert.notEqual(loginOrigin, new URL(baseUrl).origin, 'the login form is the provider\'s');
      assert.equal(await page.locator('#path').count(), 0, 'the upstream is not reached with a Partners session');
    } finally {
      await context.close();
    }
  });

  test('one browser holds a Staff and a Partners session side by side, in two applications', { timeout: TEST_TIMEOUT_MS }, async () => {
    const { baseUrl, context, page, foreignRequests } = await freshPage();
    try {
      // The start page accepts both providers: the chooser, a page of plain links (no script needed).
      await page.goto(new URL('start/page', baseUrl).href);
      await page.getByRole('heading', { name: 'Sign in' }).waitFor({ state: 'visible' });
      const choices = page.locator('nav ul li a');
      assert.deepEqual(
        (await choices.allTextContents()).map((text) => text.trim()),
        ['Staff', 'Partners'],
        'one link per accepted provider, in configuration order',
      );
      for (const href of await choices.evaluateAll((links) => links.map((link) => link.getAttribute('href')))) {
        assert.match(href, /^\/oauth2\/start\?provider=(staff|partners)&rd=%2Fstart%2Fpage$/);
      }
      assert.equal(await page.locator('script').count(), 0, 'the chooser needs no JavaScript');
      mkdirSync(resultsDir, { recursive: true });
      await page.screenshot({ path: path.join(resultsDir, 'provider-chooser.png'), fullPage: true });

      // Keyboard only: Tab to the Partners link and press Enter.
      let focused = '';
      for (let presses = 0; presses < 10 && focused !== 'Partners'; presses += 1) {
        await page.keyboard.press('Tab');
        focused = (await page.evaluate(() => document.activeElement?.textContent ?? '')).trim();
      }
      assert.equal(focused, 'Partners', 'the Partners link is reachable with Tab');
      await page.keyboard.press('Enter');
      await expectLoginForm(page);
      await signIn(page, 'carol', 'carol', 'Partners');
      await expectEchoPage(page, '/start/page');

      // The Staff-only application sends the same browser to the Staff provider; alice signs in there.
      await page.goto(new URL('admin/reports', baseUrl).href);
      await signIn(page, 'alice', 'alice', 'Staff');
      await expectEchoPage(page, '/admin/reports');
      const emailAt = async () => ((await echoedHeaders(page)).get('x-forwarded-email') ?? []).join(',');
      assert.match(await emailAt(), /alice@/, 'the Staff application sees alice');

      // Both sessions work side by side, each in its own application, with no new sign-in.
      await page.goto(new URL('partners/board', baseUrl).href);
      await expectEchoPage(page, '/partners/board');
      assert.match(await emailAt(), /carol@partners/, 'the Partners application sees carol');
      await page.goto(new URL('admin/reports?again=1', baseUrl).href);
      await expectEchoPage(page, '/admin/reports?again=1');
      assert.match(await emailAt(), /alice@/, 'and the Staff application still sees alice');
      assert.deepEqual(
        (await sessionCookies(context)).map((cookie) => cookie.name).sort(),
        ['_portcullis_partners', '_portcullis_staff'],
        'one session cookie per provider',
      );
      await page.screenshot({ path: path.join(resultsDir, 'two-sessions-admin.png'), fullPage: true });
      assert.deepEqual(foreignRequests, [], 'the browser talked only to loopback addresses');
    } finally {
      await context.close();
    }
  });

  test('the demo exits with status 0 on SIGTERM', { timeout: TEST_TIMEOUT_MS }, async () => {
    await env();
    const status = await stopDemo(demo);
    assert.deepEqual(status, { code: 0, signal: null }, `exit status after SIGTERM; stderr: ${demo.stderr.text}`);
  });
});
