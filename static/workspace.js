// The conversation's workspace: uploads by picking or dropping files, with a
// progress bar, and the list of files the agent works on.

import { upload } from './api.js';
import { $, el, formatBytes } from './dom.js';

let hooks = {
  conversation: () => null,
  userId: () => null,
  showError: () => {},
  onUploaded: async () => {},
};

/** Wires the file picker and the drop zone once. */
export function initWorkspace(appHooks) {
  hooks = { ...hooks, ...appHooks };
  $('file-input').addEventListener('change', (event) => {
    const files = [...event.target.files];
    event.target.value = '';
    uploadFiles(files);
  });
  wireDropZone();
}

function canUpload() {
  const conversation = hooks.conversation();
  return conversation && conversation.status !== 'ended';
}

function wireDropZone() {
  const zone = $('dropzone');
  zone.addEventListener('dragover', (event) => {
    if (!canUpload()) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
  // A file dropped beside the zone would make the browser leave the page to show it.
  window.addEventListener('dragover', (event) => event.preventDefault());
  window.addEventListener('drop', (event) => event.preventDefault());
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    event.stopPropagation();
    zone.classList.remove('dragging');
    if (!canUpload()) return;
    uploadFiles([...event.dataTransfer.files]);
  });
}

async function uploadFiles(files) {
  const conversation = hooks.conversation();
  if (!conversation || files.length === 0) return;
  const form = new FormData();
  const userId = hooks.userId();
  if (userId !== null) form.set('user_id', String(userId));
  form.set('conversation_id', conversation.conversation_id);
  for (const file of files) form.append('files[]', file, file.name);

  const box = $('upload-progress');
  const bar = $('upload-bar');
  const label = $('upload-label');
  const names = files.map((file) => file.name).join(', ');
  box.hidden = false;
  bar.value = 0;
  label.textContent = `Uploading ${names}…`;

  try {
    const answer = await upload('/conversation/upload', form, (fraction) => {
      bar.value = Math.round(fraction * 100);
    });
    const stored = answer.files?.length ?? 0;
    label.textContent = `Uploaded ${names}: ${stored} ${stored === 1 ? 'file' : 'files'} stored, `
      + `${answer.workspace_files ?? '?'} in the workspace now.`;
    await hooks.onUploaded();
  } catch (error) {
    box.hidden = true;
    hooks.showError(error);
  }
}

/** Shows the workspace's files, sorted by path. */
export function drawWorkspace(files) {
  const total = files.reduce((sum, file) => sum + (file.size || 0), 0);
  $('workspace-summary').textContent = files.length
    ? `${files.length} ${files.length === 1 ? 'file' : 'files'}, ${formatBytes(total)}`
    : 'The workspace is empty. Add the code, spec or logs the agent should work on.';
  const sorted = [...files].sort((a, b) => a.path.localeCompare(b.path));
  $('workspace-files').replaceChildren(...sorted.map((file) => el('li', {},
    el('span', { className: 'file-path' }, file.path),
    el('span', { className: 'file-size' }, formatBytes(file.size || 0)))));
}
