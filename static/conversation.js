// The open conversation: its messages, the chat composer and ending it. The
// workspace and artifacts panels live in workspace.js and artifacts.js.

import { ApiError, chatStream, get, postJson } from './api.js';
import { download, drawArtifacts, initArtifacts } from './artifacts.js';
import { categoryTitle } from './catalog.js';
import { $, el, formatBytes, formatNumber, formatTime } from './dom.js';
import { resetSentence } from './usage.js';
import { drawWorkspace, initWorkspace } from './workspace.js';

let current = null; // the open conversation's detail, as /conversations/{id} answered it
let busy = false; // a turn is streaming; one at a time per page
let hooks = { userId: () => null, onTurnDone: () => {}, onEnded: () => {}, showError: () => {} };

/** Wires the composer, the upload controls and the end button once. */
export function initConversation(appHooks) {
  hooks = { ...hooks, ...appHooks };
  $('composer').addEventListener('submit', (event) => {
    event.preventDefault();
    sendMessage();
  });
  $('message-input').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      sendMessage();
    }
  });
  initWorkspace({
    conversation: () => current,
    userId: () => hooks.userId(),
    showError: (error) => hooks.showError(error),
    onUploaded: refreshSidePanels,
  });
  initArtifacts({
    showError: (error) => hooks.showError(error),
    onDisposableGone: (zipId) => {
      if (current) current.artifacts = (current.artifacts || []).filter((a) => a.zip_id !== zipId);
    },
  });
  $('end-button').addEventListener('click', endConversation);
}

/** Shows nothing: used on sign-out. */
export function closeConversation() {
  current = null;
  $('conversation-body').hidden = true;
  $('placeholder').hidden = false;
  $('messages').replaceChildren();
  $('chat-status').textContent = '';
}

export function currentConversationId() {
  return current?.conversation_id || null;
}

/** Loads a conversation from the server and shows it whole. */
export async function openConversation(conversationId, { focus = 'input' } = {}) {
  const detail = await get(`/conversations/${encodeURIComponent(conversationId)}`);
  current = detail;
  $('upload-progress').hidden = true;
  $('placeholder').hidden = true;
  $('conversation-body').hidden = false;
  drawHead();
  drawMessages(detail.messages || []);
  drawWorkspace(detail.workspace || []);
  drawArtifacts(detail.artifacts || []);
  $('chat-status').textContent = '';
  if (focus === 'input' && detail.status !== 'ended') $('message-input').focus();
  else $('conversation-title').focus();
}

// Re-reads the workspace and artifacts after a turn or an upload; the
// messages already on screen stay as they are.
async function refreshSidePanels() {
  if (!current) return;
  const id = current.conversation_id;
  const detail = await get(`/conversations/${encodeURIComponent(id)}`);
  if (current?.conversation_id !== id) return;
  current = { ...current, ...detail, messages: current.messages };
  drawWorkspace(detail.workspace || []);
  drawArtifacts(detail.artifacts || []);
  drawHead();
}

function drawHead() {
  const ended = current.status === 'ended';
  const title = $('conversation-title');
  title.textContent = `${current.agent_name} · ${categoryTitle(current.category)}`;
  title.tabIndex = -1;
  $('conversation-meta').replaceChildren(
    el('span', { className: 'status-pill' }, ended ? 'Ended' : 'Active'),
    ` Model ${current.llm_model} · started ${formatTime(current.created_at)}`,
    ended && current.ended_at ? ` · ended ${formatTime(current.ended_at)}` : '');
  $('end-button').hidden = ended;
  for (const id of ['message-input', 'send-button', 'file-input']) $(id).disabled = ended;
  // While a reply streams the button only says so: disabling it would drop the keyboard focus.
  $('send-button').setAttribute('aria-disabled', String(busy));
  $('dropzone').classList.toggle('disabled', ended);
  $('composer-hint').textContent = ended
    ? 'This conversation has ended. You can still read it and download its artifacts.'
    : 'Ctrl+Enter sends.';
}

/* Messages */

function drawMessages(messages) {
  const list = $('messages');
  list.replaceChildren(...messages.map(messageItem));
}

function messageItem(message) {
  const isUser = message.role === 'user';
  const item = el('li', { className: `message ${isUser ? 'user' : 'assistant'}` },
    el('p', { className: 'message-role' }, isUser ? 'You' : current.agent_name));
  item.append(isUser || !message.content_html ? plainBody(message.content) : renderedBody(message.content_html));
  const error = errorText(message.error);
  if (error) {
    item.classList.add('failed');
    item.append(el('p', { className: 'message-error' }, error));
  }
  if (!isUser) item.append(turnMeta(message.llm_model, message.usage, null));
  return item;
}

function errorText(error) {
  if (!error) return '';
  if (typeof error === 'string') return error;
  return error.message || 'This turn failed.';
}

function plainBody(text) {
  return el('p', { className: 'message-text' }, text || '');
}

// reply_html and content_html are rendered and sanitised by the server; the
// page's Content-Security-Policy also keeps any script in them from running.
function renderedBody(html) {
  const body = el('div', { className: 'rendered' });
  body.innerHTML = html;
  return body;
}

/** The line under a reply: which model answered and what it cost. */
function turnMeta(model, usage, artifact) {
  const parts = [];
  if (model) parts.push(`Model ${model}`);
  if (usage) {
    parts.push(`${formatNumber(usage.prompt_tokens)} prompt + ${formatNumber(usage.completion_tokens)} `
      + `completion = ${formatNumber(usage.total_tokens)} tokens`);
  }
  const meta = el('p', { className: 'message-meta' }, parts.join(' · '));
  if (artifact) {
    meta.append(' · ', el('button', {
      type: 'button',
      className: 'button secondary small',
      onClick: () => download(artifact.zip_id),
    }, `Download artifact (${formatBytes(artifact.size)})`));
  }
  return meta;
}

/* Chat */

async function sendMessage() {
  const input = $('message-input');
  const text = input.value.trim();
  if (!current || busy) return;
  if (!text) {
    $('chat-status').textContent = 'Write a message first.';
    input.focus();
    return;
  }

  const form = new FormData();
  const userId = hooks.userId();
  if (userId !== null) form.set('user_id', String(userId));
  form.set('category', current.category);
  form.set('conversation_id', current.conversation_id);
  form.set('message', text);

  $('messages').append(messageItem({ role: 'user', content: text }));
  const reply = streamingItem();
  $('messages').append(reply.item);
  input.value = '';
  // The last upload's note would be out of date once the agent changes the workspace.
  $('upload-progress').hidden = true;
  setBusy(true);
  $('chat-status').textContent = `${current.agent_name} is replying…`;

  try {
    const answer = await chatStream(form, reply.add);
    finishReply(reply, answer);
    $('chat-status').textContent = 'Reply complete.';
    hooks.onTurnDone();
    refreshSidePanels().catch(hooks.showError);
  } catch (error) {
    failReply(reply, error, text);
  } finally {
    setBusy(false);
  }
}

// The reply's placeholder: plain text grows in it while the stream runs.
function streamingItem() {
  const text = el('p', { className: 'message-text' });
  const item = el('li', { className: 'message assistant streaming', 'aria-busy': 'true' },
    el('p', { className: 'message-role' }, current.agent_name), text);
  return {
    item,
    text,
    add: (delta) => {
      text.append(delta);
      item.scrollIntoView({ block: 'end' });
    },
  };
}

// Swaps the streamed plain text for the server's rendered Markdown.
function finishReply(reply, answer) {
  reply.item.classList.remove('streaming');
  reply.item.removeAttribute('aria-busy');
  if (answer.reply_html) reply.text.replaceWith(renderedBody(answer.reply_html));
  else reply.text.textContent = answer.reply || reply.text.textContent;
  reply.item.append(turnMeta(answer.llm_model, answer.usage, answer.artifact));
  reply.item.dataset.messageId = answer.message_id || '';
}

function failReply(reply, error, text) {
  reply.item.classList.remove('streaming');
  reply.item.removeAttribute('aria-busy');
  reply.item.classList.add('failed');
  const message = error instanceof ApiError && error.status === 429 ? resetSentence(error) : error.message;
  reply.item.append(el('p', { className: 'message-error' }, message));
  $('chat-status').textContent = 'The reply failed; the reason is shown under it.';
  // Nothing useful was sent: give the text back so it can be sent again.
  if (!$('message-input').value) $('message-input').value = text;
  if (error.status === 429) hooks.onTurnDone();
}

function setBusy(value) {
  busy = value;
  $('send-button').textContent = value ? 'Sending…' : 'Send';
  if (current) drawHead();
}

/* Ending */

async function endConversation() {
  if (!current) return;
  try {
    const answer = await postJson('/end_conversation', { conversation_id: current.conversation_id });
    current = { ...current, status: answer.status || 'ended', ended_at: answer.ended_at };
    drawHead();
    $('chat-status').textContent = 'The conversation has ended.';
    $('conversation-title').focus();
    hooks.onEnded();
  } catch (error) {
    hooks.showError(error);
  }
}
