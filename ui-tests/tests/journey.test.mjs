// The main road through the UI: a new user signs up, signs in, hands
// MagdiCreator a Python package, gets tests back as a streamed reply and
// downloads them as a ZIP, and sees the usage move.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import {
  PASSWORD, apiGet, launchBrowser, newPage, pageToken, registerByApi, screenshot, signIn, signUp,
  uniqueEmail,
} from './support/browser.mjs';
import { PACKAGE_FILE, pythonPackageZip } from './support/fixtures.mjs';
import { startServer } from './support/server.mjs';
import { zipEntryNames } from './support/zip.mjs';

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

// Watches the reply while it streams: did plain text show before the HTML came?
function watchStreaming(page) {
  return page.evaluate(() => {
    window.streamingTexts = [];
    const observer = new MutationObserver(() => {
      const streaming = document.querySelector('.message.assistant.streaming .message-text');
      if (streaming && streaming.textContent) window.streamingTexts.push(streaming.textContent);
    });
    observer.observe(document.getElementById('messages'), { subtree: true, childList: true, characterData: true });
  });
}

test('a new user gets tests from MagdiCreator and downloads them as a ZIP', async () => {
  const { context, page, pageErrors } = await newPage(browser);
  const email = uniqueEmail('journey');

  await page.goto(server.url);
  await signUp(page, email);
  await signIn(page, email);

  // A new account has used nothing today.
  const usageBox = page.locator('#usage');
  await page.waitForFunction(() => document.getElementById('usage').dataset.used !== undefined);
  assert.equal(await usageBox.getAttribute('data-used'), '0');

  // Start a conversation with MagdiCreator.
  await page.getByRole('radio', { name: /MagdiCreator/ }).check();
  await page.getByRole('button', { name: 'Start conversation' }).click();
  await page.locator('#conversation-title').filter({ hasText: 'MagdiCreator' }).waitFor();

  // Upload the package as a zip by picking it; the workspace lists what it unpacked.
  await page.locator('#file-input').setInputFiles(pythonPackageZip());
  await page.locator('#workspace-files .file-path').filter({ hasText: PACKAGE_FILE }).waitFor();
  assert.equal(await page.locator('#upload-bar').evaluate((bar) => bar.value), 100);
  assert.match(await page.locator('#workspace-summary').textContent(), /^1 file, /);

  // Send a message and follow the stream.
  await watchStreaming(page);
  const chatResponse = page.waitForResponse((response) => new URL(response.url()).pathname === '/chat');
  await page.getByRole('textbox', { name: 'Message' }).fill('Write pytest tests for the mathlib package.');
  await page.getByRole('button', { name: 'Send' }).click();
  const response = await chatResponse;
  assert.match(response.headers()['content-type'], /^text\/event-stream/);

  // The finished reply is the server's HTML, with the turn's model and usage under it.
  const reply = page.locator('.message.assistant:not(.streaming)').last();
  await reply.locator('.message-meta').waitFor();
  const streamed = await page.evaluate(() => window.streamingTexts);
  assert.ok(streamed.length > 0, 'plain text showed while the reply streamed');

  // What the page shows must be what the server stored for this turn.
  const token = await pageToken(page);
  const conversationId = await page.locator('#history .history-item').first().getAttribute('data-conversation-id');
  const detail = await apiGet(server.url, `/conversations/${conversationId}`, token);
  const stored = detail.messages.filter((message) => message.role === 'assistant').at(-1);
  assert.ok(stored.content.startsWith(streamed[0]), 'the streamed text is the start of the stored reply');
  assert.ok(stored.content_html, 'the stored reply has rendered HTML');
  // Compared as the browser parses both, so serialisation details do not matter.
  const sameHtml = await reply.locator('.rendered').evaluate((node, html) => {
    const expected = node.cloneNode(false);
    expected.innerHTML = html;
    return node.isEqualNode(expected);
  }, stored.content_html);
  assert.ok(sameHtml, 'the page shows the stored reply HTML');
  assert.ok((await reply.locator('.rendered pre code').count()) > 0, 'the reply has a code block');
  const meta = await reply.locator('.message-meta').textContent();
  assert.match(meta, new RegExp(`Model ${stored.llm_model}`));
  assert.match(meta, new RegExp(`= ${stored.usage.total_tokens.toLocaleString('en-US')} tokens`));

  // MagdiCreator wrote files, so the turn left an artifact naming them.
  assert.equal(detail.artifacts.length, 1);
  const artifact = detail.artifacts[0];
  assert.ok(artifact.files_changed.length > 0);
  for (const path of artifact.files_changed) {
    assert.ok(stored.content.includes(path), `the reply names ${path}`);
  }

  // Usage moved, and the page shows what the server counts.
  await page.waitForFunction(() => document.getElementById('usage').dataset.used !== '0');
  const usage = await apiGet(server.url, '/usage', token);
  assert.ok(usage.tokens_used > 0);
  assert.equal(await usageBox.getAttribute('data-used'), String(usage.tokens_used));
  assert.equal(usage.tokens_used, stored.usage.total_tokens);

  // Download the artifact through the page: a real ZIP holding the package and the new tests.
  const artifactRow = page.locator(`#artifacts li[data-zip-id="${artifact.zip_id}"]`);
  await artifactRow.waitFor();
  const downloadEvent = page.waitForEvent('download');
  await artifactRow.getByRole('button', { name: /Download artifact/ }).click();
  const download = await downloadEvent;
  assert.match(download.suggestedFilename(), /\.zip$/);
  const zip = await readFile(await download.path());
  assert.equal(zip.subarray(0, 2).toString('latin1'), 'PK');
  assert.equal(zip.length, artifact.size);
  const names = zipEntryNames(zip);
  assert.ok(names.includes(PACKAGE_FILE), `the ZIP holds ${PACKAGE_FILE}: ${names.join(', ')}`);
  for (const path of artifact.files_changed) assert.ok(names.includes(path), `the ZIP holds ${path}`);

  // The conversation is now first in the list, titled by its first message.
  const first = page.locator('#history .history-item').first();
  await first.filter({ hasText: 'Write pytest tests' }).waitFor();

  await screenshot(page, 'journey-reply-and-artifact');
  assert.deepEqual(pageErrors, []);
  await context.close();
});

// Starts a MagdiWriter conversation and sends one message: MagdiWriter writes
// a test plan as a file, so the turn leaves an artifact.
async function writerTurn(page, email) {
  await page.goto(server.url);
  await signUp(page, email);
  await signIn(page, email);
  await page.getByRole('radio', { name: /MagdiWriter/ }).check();
  await page.getByRole('button', { name: 'Start conversation' }).click();
  await page.locator('#conversation-title').filter({ hasText: 'MagdiWriter' }).waitFor();
  await page.getByRole('textbox', { name: 'Message' }).fill('Plan the tests of the password reset form.');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.locator('.message.assistant .rendered').waitFor();
  const row = page.locator('#artifacts li').first();
  await row.waitFor();
  return row;
}

// The server deletes a disposable artifact just after sending it, so allow it a moment.
async function downloadStatus(zipId, token) {
  let status = 0;
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const response = await fetch(`${server.url}/api/download?zip_id=${zipId}`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    await response.arrayBuffer();
    status = response.status;
    if (status === 404) break;
    await new Promise((wake) => setTimeout(wake, 100));
  }
  return status;
}

test('a disposable download is the last one', async () => {
  const { context, page, pageErrors } = await newPage(browser);
  const row = await writerTurn(page, uniqueEmail('disposable'));
  const zipId = await row.getAttribute('data-zip-id');

  await page.getByLabel('Delete each artifact from the server after I download it').check();
  const downloadEvent = page.waitForEvent('download');
  await row.getByRole('button', { name: /Download artifact/ }).click();
  const download = await downloadEvent;
  const zip = await readFile(await download.path());
  assert.equal(zip.subarray(0, 2).toString('latin1'), 'PK');
  assert.match(download.suggestedFilename(), /^magdiwriter-.+\.zip$/i);
  assert.ok(zipEntryNames(zip).includes('TEST_PLAN.md'));

  await page.locator(`#artifacts li[data-zip-id="${zipId}"]`).waitFor({ state: 'detached' });
  assert.equal(await downloadStatus(zipId, await pageToken(page)), 404, 'the server forgot the artifact');
  await page.reload();
  await page.locator('#conversation-title').filter({ hasText: 'MagdiWriter' }).waitFor();
  assert.equal(await page.locator(`#artifacts li[data-zip-id="${zipId}"]`).count(), 0);

  await screenshot(page, 'journey-disposable-download');
  assert.deepEqual(pageErrors, []);
  await context.close();
});

test('an ended conversation stays readable and downloadable but takes no more messages', async () => {
  const { context, page, pageErrors } = await newPage(browser);
  const row = await writerTurn(page, uniqueEmail('ending'));

  await page.getByRole('button', { name: 'End conversation' }).click();
  await page.locator('#conversation-meta .status-pill').filter({ hasText: 'Ended' }).waitFor();
  assert.equal(await page.getByRole('textbox', { name: 'Message' }).isDisabled(), true);
  assert.equal(await page.getByRole('button', { name: 'End conversation' }).isVisible(), false);
  await page.locator('#history .history-item').first().filter({ hasText: 'ended' }).waitFor();
  const conversationId = await page.locator('#history .history-item').first().getAttribute('data-conversation-id');
  const detail = await apiGet(server.url, `/conversations/${conversationId}`, await pageToken(page));
  assert.equal(detail.status, 'ended');
  assert.ok(detail.ended_at);

  // Its artifact can still be downloaded.
  const downloadEvent = page.waitForEvent('download');
  await row.getByRole('button', { name: /Download artifact/ }).click();
  const zip = await readFile(await (await downloadEvent).path());
  assert.equal(zip.subarray(0, 2).toString('latin1'), 'PK');

  await screenshot(page, 'journey-ended-conversation');
  assert.deepEqual(pageErrors, []);
  await context.close();
});

test('earlier conversations are listed newest first, twenty at a time, and reopen', async () => {
  const email = uniqueEmail('history');
  await registerByApi(server.url, email);
  const login = await (await fetch(`${server.url}/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email, password: PASSWORD }),
  })).json();

  // 22 conversations made through the API, oldest first.
  const started = [];
  for (let i = 0; i < 22; i += 1) {
    const response = await fetch(`${server.url}/start_conversation`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${login.token}` },
      body: JSON.stringify({ category: i % 2 ? 'qa_info' : 'test_generation' }),
    });
    assert.equal(response.status, 200);
    started.push((await response.json()).conversation_id);
  }
  const newestFirst = [...started].reverse();

  const { context, page, pageErrors } = await newPage(browser);
  await page.goto(server.url);
  await signIn(page, email);
  const items = page.locator('#history .history-item');
  await items.first().waitFor();
  assert.equal(await items.count(), 20);
  const shown = () => items.evaluateAll((buttons) => buttons.map((b) => b.dataset.conversationId));
  assert.deepEqual(await shown(), newestFirst.slice(0, 20));

  // The rest come with "Show older", and the focus lands on the first of them.
  await page.getByRole('button', { name: 'Show older' }).click();
  await page.waitForFunction(() => document.querySelectorAll('#history .history-item').length === 22);
  assert.deepEqual(await shown(), newestFirst);
  assert.equal(await page.getByRole('button', { name: 'Show older' }).isVisible(), false);
  assert.equal(await page.evaluate(() => document.activeElement.dataset.conversationId), newestFirst[20]);

  // Enter reopens it (the second one made, a MagdiSage conversation) and marks it in the list.
  await page.keyboard.press('Enter');
  await page.locator('#conversation-title').filter({ hasText: 'MagdiSage' }).waitFor();
  assert.equal(await items.nth(20).getAttribute('aria-current'), 'true');
  assert.equal(new URL(page.url()).hash, `#conversation=${started[1]}`);

  await screenshot(page, 'journey-history');
  assert.deepEqual(pageErrors, []);
  await context.close();
});
