// The user's earlier conversations, newest first, one page at a time.

import { get } from './api.js';
import { $, el, formatTime } from './dom.js';

const PAGE = 20;
let nextBefore = null;
let onOpen = () => {};
let currentId = null;

/** `open(conversationId)` runs when the user picks a conversation. */
export function initHistory(open, showError) {
  onOpen = open;
  $('history-more').addEventListener('click', () => showOlder().catch(showError));
}

// The button may vanish on the last page, so the focus moves to the first older item.
async function showOlder() {
  const before = $('history').children.length;
  await loadPage(nextBefore);
  $('history').children[before]?.querySelector('button')?.focus();
}

// Several refreshes can overlap (a turn ends while another loads); only the
// newest one may draw, or the list would show conversations twice.
let generation = 0;

/** Reloads the list from the newest conversation. */
export async function refreshHistory() {
  await loadPage(null);
}

async function loadPage(before) {
  const mine = before ? generation : ++generation;
  const page = await get('/conversations', { limit: PAGE, before });
  if (mine !== generation) return;
  const items = (page.conversations || []).map(historyItem);
  const list = $('history');
  if (before) list.append(...items);
  else list.replaceChildren(...items);
  nextBefore = page.next_before || null;
  $('history-more').hidden = !nextBefore;
  $('history-empty').hidden = list.children.length > 0;
  markCurrent(currentId);
}

function historyItem(conversation) {
  const title = conversation.title?.trim() || 'No messages yet';
  const ended = conversation.status === 'ended' ? ' · ended' : '';
  const button = el('button', {
    type: 'button',
    className: 'history-item',
    dataset: { conversationId: conversation.conversation_id },
    onClick: () => onOpen(conversation.conversation_id),
  },
  el('span', { className: 'history-title' }, title),
  el('span', { className: 'history-meta' },
    `${conversation.agent_name} · ${formatTime(conversation.created_at)}${ended}`));
  return el('li', {}, button);
}

/** Highlights the open conversation in the list. */
export function markCurrent(conversationId) {
  currentId = conversationId;
  for (const button of $('history').querySelectorAll('.history-item')) {
    if (button.dataset.conversationId === conversationId) button.setAttribute('aria-current', 'true');
    else button.removeAttribute('aria-current');
  }
}
