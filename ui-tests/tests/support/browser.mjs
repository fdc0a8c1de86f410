// Debian's Chromium driven by playwright-core, plus the small steps every
// test shares: signing up and in through the page, screenshots.

import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const screenshotDir = resolve(
  process.env.MAGDI_SCREENSHOT_DIR || join(here, '..', '..', 'screenshots'),
);

// No test tool may download a browser here: use the system's Chromium.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

/**
 * A fresh page. Every request the page makes is kept in `requests`, and any
 * error the page throws in `pageErrors`, so tests can assert on both.
 */
export async function newPage(browser, options = {}) {
  const context = await browser.newContext({ acceptDownloads: true, locale: 'en-US', ...options });
  const page = await context.newPage();
  const requests = [];
  const pageErrors = [];
  context.on('request', (request) => requests.push(request.url()));
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.setDefaultTimeout(15_000);
  return { context, page, requests, pageErrors };
}

/** Saves a full-page screenshot as <name>.png in the screenshot directory. */
export async function screenshot(page, name) {
  await mkdir(screenshotDir, { recursive: true });
  const path = join(screenshotDir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

let counter = 0;
/** A new address per call, so tests never share an account. */
export function uniqueEmail(tag) {
  counter += 1;
  return `${tag}-${process.pid}-${counter}@example.test`;
}

export const PASSWORD = 'correct horse battery';

/** Signs up through the form and waits for the server's confirmation. */
export async function signUp(page, email, password = PASSWORD) {
  const form = page.locator('#signup-form');
  await form.getByLabel('Email').fill(email);
  await form.getByLabel('Password', { exact: true }).fill(password);
  await form.getByLabel('Repeat the password').fill(password);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.locator('#signup-ok').filter({ hasText: 'Account created' }).waitFor();
}

/** Signs in through the form and waits until the signed-in view shows. */
export async function signIn(page, email, password = PASSWORD) {
  const form = page.locator('#signin-form');
  await form.getByLabel('Email').fill(email);
  await form.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#user-email').filter({ hasText: email }).waitFor();
}

/** Creates an account straight through the API (for tests about other things). */
export async function registerByApi(url, email, password = PASSWORD) {
  const response = await fetch(`${url}/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email, password, confirmPassword: password }),
  });
  if (response.status !== 201) throw new Error(`register answered ${response.status}`);
  return response.json();
}

/** The token the page keeps for its session, to ask the API what the page should show. */
export async function pageToken(page) {
  return page.evaluate(() => JSON.parse(localStorage.getItem('magdi.session'))?.token);
}

export async function apiGet(url, path, token) {
  const response = await fetch(`${url}${path}`, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) throw new Error(`${path} answered ${response.status}`);
  return response.json();
}
