// The page on a phone, in the dark theme, and what it asks of the network:
// nothing from any host but the Magdi server itself.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  launchBrowser, newPage, pageToken, screenshot, signIn, signUp, uniqueEmail,
} from './support/browser.mjs';
import { PACKAGE_FILE, pythonPackageZip } from './support/fixtures.mjs';
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

const PHONE = {
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
};

// Nothing may stick out sideways: a phone user should never scroll left and right.
function overflowsSideways(page) {
  return page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
}

// Relative luminance of an `rgb(r, g, b)` colour, 0 for black to 1 for white.
function luminance(rgb) {
  const [r, g, b] = rgb.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number).map((channel) => {
    const c = channel / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

const backgroundOf = (page) => page.evaluate(() => getComputedStyle(document.body).backgroundColor);

test('on a phone-sized dark screen a user chats and drops a file into the workspace', async () => {
  const { context, page, pageErrors } = await newPage(browser, { ...PHONE, colorScheme: 'dark' });
  const email = uniqueEmail('phone');
  await page.goto(server.url);
  assert.ok(luminance(await backgroundOf(page)) < 0.1, 'the dark theme follows the system setting');
  assert.equal(await overflowsSideways(page), false, 'the sign-in page fits the phone');

  await signUp(page, email);
  await signIn(page, email);
  assert.equal(await overflowsSideways(page), false, 'the signed-in page fits the phone');

  // The agents are open at first; starting a conversation folds them behind a button.
  const menu = page.getByRole('button', { name: 'Agents and conversations' });
  assert.equal(await menu.isVisible(), true);
  await page.getByRole('radio', { name: /MagdiSage/ }).check();
  await page.getByRole('button', { name: 'Start conversation' }).click();
  await page.locator('#conversation-title').filter({ hasText: 'MagdiSage' }).waitFor();
  assert.equal(await page.locator('#sidebar').isVisible(), false);
  assert.equal(await menu.getAttribute('aria-expanded'), 'false');

  // A file dropped on the drop zone lands in the workspace.
  const dropped = await page.evaluateHandle(() => {
    const transfer = new DataTransfer();
    transfer.items.add(new File(['GET /health took 12 s\n'], 'server.log', { type: 'text/plain' }));
    return transfer;
  });
  await page.dispatchEvent('#dropzone', 'dragover', { dataTransfer: dropped });
  await page.dispatchEvent('#dropzone', 'drop', { dataTransfer: dropped });
  await page.locator('#workspace-files .file-path').filter({ hasText: 'server.log' }).waitFor();

  await page.getByRole('textbox', { name: 'Message' }).fill('What is a flaky test?');
  await page.getByRole('button', { name: 'Send' }).click();
  const reply = page.locator('.message.assistant:not(.streaming)').last();
  await reply.locator('.message-meta').filter({ hasText: 'tokens' }).waitFor();
  assert.ok((await reply.locator('.rendered').textContent()).trim().length > 0);
  assert.equal(await overflowsSideways(page), false, 'the conversation fits the phone');

  // The button opens the list again.
  await menu.click();
  assert.equal(await page.locator('#sidebar').isVisible(), true);
  assert.equal(await menu.getAttribute('aria-expanded'), 'true');
  await menu.click();

  await screenshot(page, 'layout-phone-dark');
  assert.deepEqual(pageErrors, []);
  await context.close();
});

test('the light theme is used when the system asks for it', async () => {
  const { context, page, pageErrors } = await newPage(browser, { colorScheme: 'light' });
  await page.goto(server.url);
  await page.locator('#auth-view').waitFor();
  assert.ok(luminance(await backgroundOf(page)) > 0.8, 'the light theme has a light background');
  await screenshot(page, 'layout-light-sign-in');
  assert.deepEqual(pageErrors, []);
  await context.close();
});

test('the page requests nothing from any host but the server', async () => {
  const { context, page, requests, pageErrors } = await newPage(browser);
  const email = uniqueEmail('hosts');
  const home = await page.goto(server.url);

  // The server forbids other origins, and the page needs no exception to that.
  const policy = home.headers()['content-security-policy'] || '';
  assert.match(policy, /default-src 'self'/);
  assert.doesNotMatch(policy, /unsafe-inline|unsafe-eval|https?:/);

  // Walk through everything the page can do that loads something.
  await signUp(page, email);
  await signIn(page, email);
  // MagdiWriter answers with a file, so the walk includes an artifact download.
  await page.getByRole('radio', { name: /MagdiWriter/ }).check();
  await page.getByRole('button', { name: 'Start conversation' }).click();
  await page.locator('#conversation-title').filter({ hasText: 'MagdiWriter' }).waitFor();
  await page.locator('#file-input').setInputFiles(pythonPackageZip());
  await page.locator('#workspace-files .file-path').filter({ hasText: PACKAGE_FILE }).waitFor();
  await page.getByRole('textbox', { name: 'Message' }).fill('Plan the tests of mathlib.');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.locator('.message.assistant:not(.streaming) .message-meta').waitFor();
  const downloaded = page.waitForEvent('download');
  await page.locator('#artifacts li').first().getByRole('button', { name: /Download artifact/ }).click();
  await downloaded;
  // A reload comes back to the open conversation; the list reopens it too.
  await page.reload();
  await page.locator('.message.assistant .rendered').first().waitFor();
  await page.locator('#history .history-item').first().click();
  await page.locator('#history .history-item[aria-current="true"]').waitFor();
  assert.ok(await pageToken(page), 'still signed in after the reload');

  // No inline code or styles: everything comes from files the CSP allows.
  const inline = await page.evaluate(() => ({
    scripts: document.querySelectorAll('script:not([src])').length,
    styled: document.querySelectorAll('[style]').length,
    styleTags: document.querySelectorAll('style').length,
  }));
  assert.deepEqual(inline, { scripts: 0, styled: 0, styleTags: 0 });

  assert.ok(requests.length > 10, `the walk made requests (${requests.length})`);
  const foreign = requests.filter((url) => new URL(url).origin !== server.url);
  assert.deepEqual(foreign, [], 'every request went to the server');
  await screenshot(page, 'layout-reopened-conversation');
  assert.deepEqual(pageErrors, []);
  await context.close();
});
