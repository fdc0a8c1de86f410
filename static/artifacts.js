// The conversation's artifacts: each ZIP an agent made, downloaded with the
// Bearer token, once or for good (disposable).

import { downloadArtifact } from './api.js';
import { $, el, formatBytes, formatTime } from './dom.js';

let hooks = { showError: () => {}, onDisposableGone: () => {} };
let shown = [];

export function initArtifacts(appHooks) {
  hooks = { ...hooks, ...appHooks };
}

/** Shows the artifacts, newest first. */
export function drawArtifacts(artifacts) {
  shown = artifacts;
  const newestFirst = [...artifacts].sort((a, b) => (b.created_at || '').localeCompare(a.created_at || ''));
  $('artifacts-empty').hidden = newestFirst.length > 0;
  $('artifacts').replaceChildren(...newestFirst.map((artifact, index) => {
    const number = newestFirst.length - index;
    const changed = artifact.files_changed || [];
    return el('li', { dataset: { zipId: artifact.zip_id } },
      el('div', { className: 'artifact-info' },
        el('span', {}, `Artifact ${number} · ${formatBytes(artifact.size || 0)} · ${formatTime(artifact.created_at)}`),
        changed.length ? el('span', { className: 'artifact-files' }, `Changed: ${changed.join(', ')}`) : null,
        artifact.disposable ? el('span', { className: 'artifact-files' }, 'Deleted after its next download') : null),
      el('button', {
        type: 'button',
        className: 'button secondary small',
        'aria-label': `Download artifact ${number}`,
        onClick: () => download(artifact.zip_id),
      }, 'Download'));
  }));
}

/** Downloads one artifact, as disposable when the box is ticked. */
export async function download(zipId) {
  const disposable = $('disposable').checked;
  try {
    const saved = await downloadArtifact(zipId, disposable);
    $('chat-status').textContent = `Downloaded ${saved.name} (${formatBytes(saved.size)}).`;
    // The server deletes a disposable artifact just after the last byte, so
    // asking it again right now could still list it: drop it here instead.
    if (disposable) {
      drawArtifacts(shown.filter((artifact) => artifact.zip_id !== zipId));
      hooks.onDisposableGone(zipId);
    }
  } catch (error) {
    hooks.showError(error);
  }
}
