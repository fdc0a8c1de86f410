// Magdi's web UI: starts the page, switches between signed out and signed in,
// and shows any error as the server's own sentence in one banner.

import { ApiError, setToken, setUnauthorizedHandler, get } from './api.js';
import { initAuth, resetAuthForms } from './auth.js';
import { loadCatalog, startConversation } from './catalog.js';
import {
  closeConversation, currentConversationId, initConversation, openConversation,
} from './conversation.js';
import { $ } from './dom.js';
import { initHistory, markCurrent, refreshHistory } from './history.js';
import { clearSession, loadSession, saveSession, watchExpiry } from './session.js';
import { refreshUsage, resetSentence } from './usage.js';

let session = null;

function showError(error) {
  let message = error instanceof ApiError || error instanceof Error
    ? error.message
    : 'Something went wrong. Please try again.';
  if (error instanceof ApiError && error.status === 429) message = resetSentence(error);
  $('banner-text').textContent = message;
  $('banner').hidden = false;
}

function clearError() {
  $('banner').hidden = true;
  $('banner-text').textContent = '';
}

/* Signed out / signed in */

function showSignedOut(notice) {
  session = null;
  setToken(null);
  clearSession();
  closeConversation();
  rememberOpen(null);
  resetAuthForms();
  $('account').hidden = true;
  $('app-view').hidden = true;
  $('auth-view').hidden = false;
  if (notice) showError(new Error(notice));
  $('signin-email').focus();
}

async function showSignedIn(current) {
  session = current;
  setToken(current.token);
  watchExpiry(current, () => showSignedOut('Your session has expired. Please sign in again.'));
  $('user-email').textContent = current.user.email;
  $('auth-view').hidden = true;
  $('account').hidden = false;
  $('app-view').hidden = false;
  clearError();
  // Nothing is open yet, so the agents show even on a phone.
  $('sidebar').classList.remove('collapsed');
  $('menu-toggle').setAttribute('aria-expanded', 'true');
  // The sign-in form just vanished; put the focus where the next step starts.
  $('main').focus();

  // Each part loads on its own, so one failing part does not blank the others.
  const parts = [loadCatalog(), refreshHistory(), refreshUsage(current.user.user_id)];
  const results = await Promise.allSettled(parts);
  const failed = results.find((result) => result.status === 'rejected');
  if (failed && session) showError(failed.reason);

  const fromAddress = conversationInAddress();
  if (fromAddress && session) {
    // A conversation that is gone (or someone else's) just leaves the address.
    await reopen(fromAddress);
    if (!currentConversationId()) rememberOpen(null);
  }
}

async function signedIn(login) {
  await showSignedIn(saveSession(login));
}

// On load: a stored, unexpired token is checked once with the server before use.
async function resume() {
  const stored = loadSession();
  if (!stored) {
    showSignedOut();
    return;
  }
  setToken(stored.token);
  try {
    await get('/validate-user');
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      showSignedOut('Your session has ended. Please sign in again.');
      return;
    }
    // The server could not be asked: keep the session and say why.
    showError(error);
  }
  await showSignedIn(stored);
}

/* Conversations */

async function startNew(event) {
  event.preventDefault();
  clearError();
  const button = $('start-button');
  // Marked busy rather than disabled, so the keyboard focus stays on it.
  if (button.getAttribute('aria-disabled') === 'true') return;
  button.setAttribute('aria-disabled', 'true');
  try {
    const started = await startConversation();
    await openConversation(started.conversation_id);
    markCurrent(started.conversation_id);
    rememberOpen(started.conversation_id);
    collapseMenu();
    await refreshHistory();
  } catch (error) {
    showError(error);
  } finally {
    button.setAttribute('aria-disabled', 'false');
  }
}

// The open conversation is kept in the address (#conversation=<id>), so a
// reload or a bookmark comes back to it.
function rememberOpen(conversationId) {
  const hash = conversationId ? `#conversation=${conversationId}` : '';
  window.history.replaceState(null, '', `${window.location.pathname}${window.location.search}${hash}`);
}

function conversationInAddress() {
  const match = /^#conversation=([0-9a-fA-F-]{36})$/.exec(window.location.hash);
  return match ? match[1] : null;
}

async function reopen(conversationId) {
  clearError();
  try {
    await openConversation(conversationId, { focus: 'title' });
    markCurrent(conversationId);
    rememberOpen(conversationId);
    collapseMenu();
  } catch (error) {
    showError(error);
  }
}

function afterTurn() {
  if (!session) return;
  refreshUsage(session.user.user_id).catch(showError);
  // The first message gives a conversation its title in the list.
  refreshHistory().then(() => markCurrent(currentConversationId())).catch(showError);
}

/* Phone layout: the sidebar folds away while a conversation is open. */

function collapseMenu() {
  $('sidebar').classList.add('collapsed');
  $('menu-toggle').setAttribute('aria-expanded', 'false');
}

function toggleMenu() {
  const open = $('sidebar').classList.toggle('collapsed') === false;
  $('menu-toggle').setAttribute('aria-expanded', String(open));
}

function init() {
  initAuth((login) => signedIn(login).catch(showError));
  initHistory(reopen, showError);
  initConversation({
    userId: () => session?.user.user_id ?? null,
    onTurnDone: afterTurn,
    onEnded: afterTurn,
    showError,
  });
  setUnauthorizedHandler(() => showSignedOut('Your session has ended. Please sign in again.'));
  $('start-form').addEventListener('submit', startNew);
  $('sign-out').addEventListener('click', () => showSignedOut());
  $('banner-close').addEventListener('click', clearError);
  $('menu-toggle').addEventListener('click', toggleMenu);

  // A bug in this page must still end as a readable sentence, not a blank screen.
  window.addEventListener('unhandledrejection', (event) => {
    event.preventDefault();
    showError(event.reason);
  });
  window.addEventListener('error', () => showError(new Error('Something went wrong on this page. Reload it to go on.')));

  resume().catch(showError);
}

init();
