// A user over the daily allowance is told, in the server's words, when it
// comes back; the page never shows a stack or goes blank.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  apiGet, launchBrowser, newPage, pageToken, screenshot, signIn, signUp, uniqueEmail,
} from './support/browser.mjs';
import { startServer } from './support/server.mjs';

let server;
let browser;

before(async () => {
  // An allowance of one token: one turn at most goes through.
  server = await startServer(['--daily-token-limit', '1']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('over the daily allowance the page says when it resets', async () => {
  const { context, page, pageErrors } = await newPage(browser);
  const email = uniqueEmail('limit');
  await page.goto(server.url);
  await signUp(page, email);
  await signIn(page, email);
  await page.locator('#usage-text').filter({ hasText: 'of 1 tokens' }).waitFor();

  await page.getByRole('radio', { name: /MagdiSage/ }).check();
  await page.getByRole('button', { name: 'Start conversation' }).click();
  await page.locator('#conversation-title').filter({ hasText: 'MagdiSage' }).waitFor();

  // The allowance may let the first turn through (it is checked before a turn,
  // and a turn may overshoot it); the next one is refused at the latest.
  const failure = page.locator('.message.assistant.failed .message-error');
  const finished = page.locator('.message.assistant:not(.streaming)');
  for (let turn = 1; turn <= 2 && (await failure.count()) === 0; turn += 1) {
    await page.getByRole('textbox', { name: 'Message' }).fill('What is boundary value analysis?');
    await page.getByRole('button', { name: 'Send' }).click();
    await finished.nth(turn - 1).locator('.message-meta, .message-error').first().waitFor();
  }
  await failure.waitFor();

  // What the server says to the same turn: 429 with the reset time.
  const conversationId = new URL(page.url()).hash.replace('#conversation=', '');
  const form = new FormData();
  form.set('category', 'qa_info');
  form.set('conversation_id', conversationId);
  form.set('message', 'What is boundary value analysis?');
  const response = await fetch(`${server.url}/chat`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${await pageToken(page)}` },
    body: form,
  });
  assert.equal(response.status, 429);
  const body = await response.json();
  assert.equal(body.error, 'rate_limited');
  assert.ok(Date.parse(body.reset_at) > Date.now(), 'the allowance resets in the future');

  // The failed turn shows the server's sentence and the reset time in the reader's clock.
  const resetText = await page.evaluate((at) => new Date(at).toLocaleString(undefined, {
    dateStyle: 'medium', timeStyle: 'short',
  }), body.reset_at);
  const shown = await failure.textContent();
  assert.ok(shown.includes(body.message), `shows the server message: ${shown}`);
  assert.ok(shown.includes(`resets ${resetText}`), `shows the reset time: ${shown}`);
  assert.doesNotMatch(shown, /at .+\.js:\d+|TypeError|undefined/);

  // The message the user wrote is kept in the box to send again later.
  assert.equal(await page.getByRole('textbox', { name: 'Message' }).inputValue(), 'What is boundary value analysis?');

  // The top bar shows the real usage: the refused turn was not charged.
  const usage = await apiGet(server.url, '/usage', await pageToken(page));
  assert.equal(usage.daily_limit, 1);
  await page.waitForFunction((used) => document.getElementById('usage').dataset.used === String(used), usage.tokens_used);

  await screenshot(page, 'limits-allowance-used-up');
  assert.deepEqual(pageErrors, []);
  await context.close();
});
