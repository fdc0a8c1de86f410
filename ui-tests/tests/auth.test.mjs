// Signing up, in and out: the server's own validation messages next to the
// fields, a session that survives a reload, and keyboard-only sign-in.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  PASSWORD, launchBrowser, newPage, registerByApi, screenshot, signIn, signUp, uniqueEmail,
} from './support/browser.mjs';
import { startServer } from './support/server.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

// What the server itself says about a registration, to compare with the page.
async function registerAnswer(body) {
  const response = await fetch(`${server.url}/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

async function submitSignUp(page, { email, password, confirmPassword }) {
  const form = page.locator('#signup-form');
  await form.getByLabel('Email').fill(email);
  await form.getByLabel('Password', { exact: true }).fill(password);
  await form.getByLabel('Repeat the password').fill(confirmPassword);
  await form.getByRole('button', { name: 'Create account' }).click();
}

test('sign-up shows the server validation message next to the field it names', async () => {
  const { context, page, pageErrors } = await newPage(browser);
  await page.goto(server.url);
  const taken = uniqueEmail('taken');
  await registerByApi(server.url, taken);

  const cases = [
    { body: { email: 'not-an-address', password: PASSWORD, confirmPassword: PASSWORD }, input: '#signup-email' },
    { body: { email: uniqueEmail('short'), password: 'short', confirmPassword: 'short' }, input: '#signup-password' },
    { body: { email: uniqueEmail('differ'), password: PASSWORD, confirmPassword: `${PASSWORD}!` }, input: '#signup-confirm' },
    { body: { email: taken, password: PASSWORD, confirmPassword: PASSWORD }, input: '#signup-email' },
  ];
  for (const { body, input } of cases) {
    await submitSignUp(page, body);
    const expected = await registerAnswer(body);
    assert.equal(expected.status, 400);
    assert.equal(`#signup-${{ email: 'email', password: 'password', confirmPassword: 'confirm' }[expected.body.field]}`,
      input, `the server names the field for ${JSON.stringify(body)}`);

    const error = page.locator(`${input}-error`);
    await error.filter({ hasText: expected.body.message }).waitFor();
    assert.equal(await page.locator(input).getAttribute('aria-invalid'), 'true');
    // The message is tied to its field for screen readers too.
    const describedBy = await page.locator(input).getAttribute('aria-describedby');
    assert.ok(describedBy.split(' ').includes(`${input.slice(1)}-error`));
  }
  await screenshot(page, 'auth-signup-validation');
  assert.deepEqual(pageErrors, []);
  await context.close();
});

test('a wrong password shows the server message and keeps the user signed out', async () => {
  const { context, page, pageErrors } = await newPage(browser);
  const email = uniqueEmail('wrong');
  await registerByApi(server.url, email);
  await page.goto(server.url);

  const form = page.locator('#signin-form');
  await form.getByLabel('Email').fill(email);
  await form.getByLabel('Password').fill('not the password');
  await form.getByRole('button', { name: 'Sign in' }).click();

  const api = await fetch(`${server.url}/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email, password: 'not the password' }),
  });
  assert.equal(api.status, 401);
  const { message } = await api.json();
  await page.locator('#signin-error').filter({ hasText: message }).waitFor();
  assert.equal(await page.locator('#app-view').isVisible(), false);
  await screenshot(page, 'auth-wrong-password');
  assert.deepEqual(pageErrors, []);
  await context.close();
});

test('the session survives a reload until sign-out, and an expired one is dropped', async () => {
  const { context, page, pageErrors } = await newPage(browser);
  const email = uniqueEmail('session');
  await page.goto(server.url);
  await signUp(page, email);
  await signIn(page, email);

  const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('magdi.session')));
  assert.ok(Date.parse(stored.expiresAt) > Date.now(), 'the session keeps the token expiry from /login');

  await page.reload();
  await page.locator('#user-email').filter({ hasText: email }).waitFor();
  assert.equal(await page.locator('#auth-view').isVisible(), false);

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('#auth-view').waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('magdi.session')), null);
  await page.reload();
  await page.locator('#auth-view').waitFor();
  assert.equal(await page.locator('#app-view').isVisible(), false);

  // A stored session whose token has expired is not used, and says why it is gone.
  await page.evaluate((session) => {
    localStorage.setItem('magdi.session', JSON.stringify({ ...session, expiresAt: '2000-01-01T00:00:00Z' }));
  }, stored);
  await page.reload();
  await page.locator('#auth-view').waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('magdi.session')), null);

  // A token the server no longer accepts ends the session on load.
  await page.evaluate((session) => {
    localStorage.setItem('magdi.session', JSON.stringify({ ...session, token: `${session.token}x` }));
  }, stored);
  await page.reload();
  await page.locator('#banner-text').filter({ hasText: 'sign in again' }).waitFor();
  assert.equal(await page.locator('#auth-view').isVisible(), true);
  await screenshot(page, 'auth-session-ended');
  assert.deepEqual(pageErrors, []);
  await context.close();
});

// The focused element must show a ring: an outline or a box shadow.
function focusIsVisible(page) {
  return page.evaluate(() => {
    const style = getComputedStyle(document.activeElement);
    return (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0) || style.boxShadow !== 'none';
  });
}

const activeId = (page) => page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);

test('keyboard alone signs in and starts a conversation, with focus always visible', async () => {
  const { context, page, pageErrors } = await newPage(browser);
  const email = uniqueEmail('keyboard');
  await registerByApi(server.url, email);
  await page.goto(server.url);
  await page.locator('#auth-view').waitFor();

  // The page puts the focus in the sign-in email field; Shift+Tab reaches the skip link.
  await page.waitForFunction(() => document.activeElement?.id === 'signin-email');
  assert.ok(await focusIsVisible(page), 'the email field shows focus');
  await page.keyboard.press('Shift+Tab');
  assert.equal(await page.evaluate(() => document.activeElement.className), 'skip-link');
  assert.ok(await focusIsVisible(page), 'the skip link shows focus');
  await page.keyboard.press('Tab');
  assert.equal(await activeId(page), 'signin-email');

  await page.keyboard.type(email);
  await page.keyboard.press('Tab');
  assert.equal(await activeId(page), 'signin-password');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await page.locator('#user-email').filter({ hasText: email }).waitFor();
  await page.getByRole('radio', { name: /MagdiCreator/ }).waitFor();
  assert.equal(await activeId(page), 'main', 'signing in moves the focus to the main area');

  // From the main area, Tab moves through the agents to the start button.
  const seen = [];
  for (let step = 0; step < 20 && (await activeId(page)) !== 'start-button'; step += 1) {
    await page.keyboard.press('Tab');
    seen.push(await activeId(page));
    assert.ok(await focusIsVisible(page), `focus is visible on ${seen.at(-1)}`);
  }
  assert.equal(await activeId(page), 'start-button', `Tab order was: ${seen.join(', ')}`);
  assert.ok(seen.some((id) => id.startsWith('agent-')), 'the agent choice is on the way');
  assert.ok(seen.includes('model-select'), 'the model choice is on the way');
  await page.keyboard.press('Enter');

  // The new conversation takes the focus to its message box; Ctrl+Enter sends.
  await page.waitForFunction(() => document.activeElement?.id === 'message-input');
  await page.keyboard.type('What can you do?');
  await page.keyboard.press('Control+Enter');
  await page.locator('.message.assistant:not(.streaming) .message-meta').waitFor();
  assert.equal(await activeId(page), 'message-input');

  await screenshot(page, 'auth-keyboard-only');
  assert.deepEqual(pageErrors, []);
  await context.close();
});
