// Talking to the Magdi server. Every call goes to this page's own origin, with
// the Bearer token when one is set, and every failure becomes an ApiError that
// carries the server's own `message`, so the UI never has to show anything else.

let token = null;
let onUnauthorized = () => {};

/** Sets the Bearer token used by every later call (null to drop it). */
export function setToken(value) {
  token = value;
}

/** Called when a signed-in call answers 401: the session is over. */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/** An error answer from the server, or a failure to reach it. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || fallbackMessage(status));
    this.name = 'ApiError';
    this.status = status;
    this.code = body?.error || 'unknown_error';
    this.field = body?.field || null;
    this.body = body || {};
  }
}

// Used only when an answer has no JSON message (a proxy page, a dropped connection).
function fallbackMessage(status) {
  if (status === 0) return 'Magdi could not be reached. Check your connection and try again.';
  if (status === 413) return 'That upload is larger than Magdi accepts.';
  if (status >= 500) return `Magdi answered with an error (${status}). Please try again.`;
  return `The request failed (${status}).`;
}

function authHeaders(extra = {}) {
  const headers = { ...extra };
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

// Reads an error body as JSON when it is JSON; anything else is ignored.
async function errorFromResponse(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return new ApiError(response.status, body);
}

function noteUnauthorized(status) {
  if (status === 401 && token) onUnauthorized();
}

/** Sends a request and returns the parsed JSON answer, or throws ApiError. */
export async function request(method, path, { json, form, query } = {}) {
  const url = withQuery(path, query);
  const init = { method, headers: authHeaders({ Accept: 'application/json' }) };
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (form) {
    init.body = form;
  }

  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, null);
  }
  if (!response.ok) {
    noteUnauthorized(response.status);
    throw await errorFromResponse(response);
  }
  if (response.status === 204) return {};
  return response.json();
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

export const get = (path, query) => request('GET', path, { query });
export const postJson = (path, json) => request('POST', path, { json });

/**
 * Uploads files with XMLHttpRequest, because fetch cannot report upload
 * progress. `onProgress` gets a fraction between 0 and 1.
 */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.setRequestHeader('Accept', 'application/json');
    if (token) xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.responseType = 'text';

    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener('load', () => {
      const body = parseJson(xhr.responseText);
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(body || {});
      } else {
        noteUnauthorized(xhr.status);
        reject(new ApiError(xhr.status, body));
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, null)));
    xhr.addEventListener('abort', () => reject(new ApiError(0, null)));
    xhr.send(form);
  });
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/**
 * Sends one chat turn and follows the reply as Server-Sent Events.
 * `onDelta(text)` gets each piece of the reply as it arrives; the promise
 * resolves with the `done` event's data (the full /chat answer).
 */
export async function chatStream(form, onDelta) {
  let response;
  try {
    response = await fetch('/chat', {
      method: 'POST',
      headers: authHeaders({ Accept: 'text/event-stream' }),
      body: form,
    });
  } catch {
    throw new ApiError(0, null);
  }
  if (!response.ok) {
    noteUnauthorized(response.status);
    throw await errorFromResponse(response);
  }

  // A server that ignores the Accept header answers plain JSON; take it as the whole turn.
  const type = response.headers.get('Content-Type') || '';
  if (!type.includes('text/event-stream')) {
    const body = await response.json();
    if (body.reply) onDelta(body.reply);
    return body;
  }
  return readEvents(response.body, onDelta);
}

async function readEvents(stream, onDelta) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    // Normalise line ends so one blank line always separates events.
    buffer += value.replace(/\r\n?/g, '\n');
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const event = parseEvent(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      const finished = handleEvent(event, onDelta);
      if (finished) {
        reader.cancel().catch(() => {});
        return finished;
      }
    }
  }
  const last = handleEvent(parseEvent(buffer), onDelta);
  if (last) return last;
  throw new ApiError(502, {
    error: 'stream_incomplete',
    message: 'The reply stopped before it was complete. Please try again.',
  });
}

// One SSE block: `event:` names it, `data:` lines are joined with newlines.
function parseEvent(block) {
  let name = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') name = value;
    else if (field === 'data') data.push(value);
  }
  return { name, data: data.join('\n') };
}

// Returns the finished answer on `done`, throws on `error`, else null.
function handleEvent(event, onDelta) {
  if (!event.data) return null;
  const payload = parseJson(event.data);
  if (event.name === 'delta') {
    if (payload && typeof payload.text === 'string') onDelta(payload.text);
    return null;
  }
  if (event.name === 'done') {
    if (!payload) throw new ApiError(502, { error: 'bad_stream', message: 'The reply could not be read.' });
    return payload;
  }
  if (event.name === 'error') {
    // The stream has no status code of its own; the error code says enough.
    throw new ApiError(payload?.error === 'rate_limited' ? 429 : 502, payload);
  }
  return null;
}

/**
 * Downloads an artifact with the Bearer token and hands it to the browser as
 * a file. A bare link would not carry the token, so the ZIP goes through a blob.
 */
export async function downloadArtifact(zipId, disposable) {
  const url = withQuery('/api/download', { zip_id: zipId, disposable: disposable ? '1' : '' });
  let response;
  try {
    response = await fetch(url, { headers: authHeaders() });
  } catch {
    throw new ApiError(0, null);
  }
  if (!response.ok) {
    noteUnauthorized(response.status);
    throw await errorFromResponse(response);
  }
  const blob = await response.blob();
  const name = filenameFrom(response.headers.get('Content-Disposition')) || `${zipId}.zip`;
  saveBlob(blob, name);
  return { name, size: blob.size };
}

function filenameFrom(disposition) {
  if (!disposition) return null;
  const star = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(disposition);
  if (star) return decodeURIComponent(star[1].trim());
  const plain = /filename\s*=\s*"?([^";]+)"?/i.exec(disposition);
  return plain ? plain[1].trim() : null;
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // Give the browser a moment to start the save before the URL goes away.
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
