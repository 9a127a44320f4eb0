// Files: resumable uploads (tus) with a progress bar, pause and abort;
// the person's files to download or delete; a zip export of chosen files.

import { h, fill, field, toast, when, size } from '../dom.js';
import { get, post, query, download } from '../api.js';
import * as tus from '../tus.js';
import { taskCard } from './tasks.js';

export async function renderFiles(main) {
  const picker = field('Choose a file to upload', h('input', { name: 'file', type: 'file', multiple: true }),
    'An upload that stopped (a reload, a dropped connection) resumes when you choose the same file again.');
  const uploads = h('div#uploads');
  const body = h('tbody');
  const exports = h('div.grid2#file-exports');
  const zip = h('button.secondary#export-zip', { type: 'button' }, 'Export the chosen files as zip');

  async function load() {
    const page = await get(`/files${query({ limit: 100 })}`);
    fill(body, page.items.map(row));
    if (!page.items.length) body.append(h('tr', {}, h('td', { colspan: 5 }, 'No files yet.')));
  }

  function row(file) {
    const complete = file.status === 'complete';
    return h('tr', { dataset: { file: file.id, name: file.name } },
      h('td', {}, complete ? h('input', { type: 'checkbox', name: 'pick', value: file.id, 'aria-label': `Choose ${file.name}` }) : null),
      h('td', {}, file.name),
      h('td', {}, complete ? size(file.size) : `${size(file.offset)} of ${size(file.size)}`),
      h('td', {}, complete ? when(file.created_at) : 'uploading'),
      h('td.row', {},
        complete ? h('button.secondary', {
          type: 'button', 'aria-label': `Download ${file.name}`,
          onclick: () => download(file.id, file.name).catch((e) => toast(e.message)),
        }, 'Download') : null,
        h('button.danger', {
          type: 'button', 'aria-label': `Delete ${file.name}`,
          onclick: async () => {
            try { await tus.remove(file.id); await load(); } catch (e) { toast(e.message); }
          },
        }, complete ? 'Delete' : 'Discard')));
  }

  function start(file) {
    const bar = h('progress', { max: file.size || 1, value: 0, 'aria-label': `Upload of ${file.name}` });
    const text = h('span.muted.upload-text');
    const pause = h('button.secondary', { type: 'button' }, 'Pause');
    const abort = h('button.danger', { type: 'button' }, 'Abort');
    const card = h('div.card.upload', { dataset: { upload: file.name } },
      h('strong', {}, file.name), ' ', h('span.muted', {}, size(file.size)), bar, text, h('div.row', {}, pause, abort));
    uploads.prepend(card);
    let controller = null;
    let url = null;
    let resumed = null;

    async function run() {
      controller = new AbortController();
      pause.textContent = 'Pause';
      try {
        await tus.upload(file, {
          signal: controller.signal,
          onStart: (u) => { url = u; },
          onRetry: (seconds) => {
            card.dataset.state = 'retrying';
            text.textContent = `Connection lost at ${size(bar.value)}; trying again in ${seconds} s…`;
          },
          onProgress: (sent, total, from) => {
            if (from) resumed = from;
            // "Connection lost" stays until bytes arrive again.
            if (card.dataset.state === 'retrying') {
              if (sent <= bar.value) return;
              card.dataset.state = 'reconnected';
            }
            bar.value = sent;
            text.textContent = `${Math.floor((sent / (total || 1)) * 100)}% (${size(sent)})${resumed ? ` — resumed at ${size(resumed)}` : ''}`;
          },
        });
        card.dataset.state = 'done';
        text.textContent = `Uploaded${resumed ? ` (resumed at ${size(resumed)})` : ''}.`;
        pause.remove();
        abort.remove();
        await load();
      } catch (e) {
        if (e.name === 'AbortError') return;
        card.dataset.state = 'failed';
        text.textContent = e.message;
        text.className = 'error';
      }
    }

    pause.addEventListener('click', () => {
      if (controller && !controller.signal.aborted) {
        controller.abort();
        pause.textContent = 'Resume';
        text.textContent += ' — paused';
      } else run();
    });
    abort.addEventListener('click', async () => {
      if (controller) controller.abort();
      try {
        await tus.abort(file, url);
        card.dataset.state = 'aborted';
        fill(card, h('span.muted', {}, `Upload of ${file.name} aborted; nothing of it was kept.`));
        await load();
      } catch (e) { toast(e.message); }
    });
    run();
  }

  picker.input.addEventListener('change', () => {
    for (const file of picker.input.files) start(file);
    picker.input.value = '';
  });
  zip.addEventListener('click', async () => {
    const files = [...body.querySelectorAll('input[name=pick]:checked')].map((c) => c.value);
    if (!files.length) { toast('Choose one or more files first.'); return; }
    try {
      const task = await post('/tasks', { type: 'export', files, format: 'zip' }, { headers: { 'Idempotency-Key': crypto.randomUUID() } });
      exports.prepend(taskCard(task, { title: 'Export (zip)' }));
    } catch (e) { toast(e.message); }
  });

  fill(main, h('h1', {}, 'Files'),
    h('section.card', { 'aria-label': 'Upload' }, picker.wrap, uploads),
    h('h2', {}, 'Your files'),
    h('div.table-wrap', {}, h('table#file-table', {},
      h('thead', {}, h('tr', {}, ['', 'Name', 'Size', 'Added', ''].map((t) => h('th', { scope: 'col' }, t)))), body)),
    h('div.row', {}, zip), exports);
  await load();
}
