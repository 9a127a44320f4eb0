// Long-running tasks: start a delay (anyone) or a script (admins), watch
// each one's progress bar, logs and result live, cancel it; an export's
// result is downloaded from here too.

import { h, fill, field, showProblem, clearProblem, toast, when, size } from '../dom.js';
import { get, post, seg, query, download } from '../api.js';
import { subscribe } from '../live.js';

const FINISHED = ['succeeded', 'failed', 'cancelled'];

/** A live card for one task; it follows `task:{id}` until the task ends. */
export function taskCard(task, { title } = {}) {
  const status = h('span.status');
  const bar = h('progress', { max: 1, value: 0, 'aria-label': 'Progress' });
  const percent = h('span.muted');
  const outcome = h('div.outcome');
  const logs = h('pre.logs', { hidden: true, 'aria-label': 'Logs' });
  const cancel = h('button.danger', { type: 'button' }, 'Cancel');
  const el = h('article.card.task', { dataset: { task: task.id }, 'aria-label': title || `Task ${task.id}` },
    h('div.row', {}, h('strong', {}, title || label(task)), status),
    h('div.muted', {}, `started ${when(task.created_at)} by ${task.owner}`),
    bar, percent, outcome, logs, h('div.row', {}, cancel));
  let unsubscribe = null;

  function show(t) {
    if (t.updated_at && task.updated_at && t.updated_at < task.updated_at && t.status === task.status) return;
    task = { ...task, ...t };
    el.dataset.status = task.status;
    status.className = `badge status status-${task.status}`;
    status.textContent = task.status;
    const p = task.status === 'succeeded' ? 1 : (typeof task.progress === 'number' ? task.progress : 0);
    bar.value = p;
    percent.textContent = `${Math.round(p * 100)}%`;
    cancel.hidden = FINISHED.includes(task.status);
    if (task.logs && task.logs.length) {
      logs.hidden = false;
      logs.textContent = task.logs.map((l) => (typeof l === 'string' ? l : l.message ?? JSON.stringify(l))).join('\n');
    }
    fill(outcome);
    if (task.status === 'succeeded') {
      if (task.type === 'export' && task.result?.file) {
        outcome.append(h('button', {
          type: 'button',
          onclick: async () => {
            try {
              const file = await get(`/files/${seg(task.result.file)}`);
              await download(task.result.file, file.name);
            } catch (e) { toast(e.message); }
          },
        }, `Download (${size(task.result.size)})`));
      } else {
        outcome.append(h('span', {}, 'Result: '), h('code.result', {}, JSON.stringify(task.result)));
      }
    } else if (task.status === 'failed' && task.error) {
      outcome.append(h('span.error', {}, `${task.error.code}: ${task.error.message}`));
    } else if (task.status === 'cancelled') {
      outcome.append(h('span.muted', {}, `Cancelled${task.cancelled_by ? ` by ${task.cancelled_by}` : ''}.`));
    }
    if (FINISHED.includes(task.status) && unsubscribe) { unsubscribe(); unsubscribe = null; }
  }

  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    try { show(await post(`/tasks/${seg(task.id)}/cancel`)); } catch (e) { toast(e.message); }
    cancel.disabled = false;
  });
  show(task);
  if (!FINISHED.includes(task.status)) {
    // From the task's first event (`after: 0`): the server replays its log,
    // then goes live with no gap, so an outcome reached before the
    // subscription took is not missed.
    unsubscribe = subscribe(`task:${task.id}`, (event) => { if (event.task) show(event.task); }, { after: 0 });
  }
  return el;
}

function label(task) {
  if (task.type === 'delay') return `Delay of ${task.seconds ?? '?'} s`;
  if (task.type === 'js') return 'Script';
  return `Export${task.format ? ` (${task.format})` : ''}`;
}

export async function renderTasks(main, { user }) {
  const list = h('div.grid2#task-list');
  const seconds = field('Seconds', h('input', { name: 'seconds', type: 'number', min: 0, step: 'any', value: 10, required: true }));
  const delayForm = h('form.inline#start-delay', { novalidate: true, 'aria-label': 'Start a delay' },
    seconds.wrap, h('button', { type: 'submit' }, 'Start delay'), h('p.form-error.error', { role: 'alert' }));
  let scriptForm = null;

  async function start(form, body) {
    clearProblem(form);
    try {
      const task = await post('/tasks', body, { headers: { 'Idempotency-Key': crypto.randomUUID() } });
      list.prepend(taskCard(task));
    } catch (e) { showProblem(form, e.problem || { detail: e.message }); }
  }
  delayForm.addEventListener('submit', (e) => {
    e.preventDefault();
    start(delayForm, { type: 'delay', seconds: Number(seconds.input.value) });
  });
  if (user.level === 'admin') {
    const code = field('Script (JavaScript)', h('textarea', { name: 'code', required: true, spellcheck: false }, 'console.log("hello");\n6 * 7'));
    scriptForm = h('form.stack#start-script', { novalidate: true, 'aria-label': 'Run a script' },
      code.wrap, h('p.form-error.error', { role: 'alert' }), h('div', {}, h('button', { type: 'submit' }, 'Run script')));
    scriptForm.addEventListener('submit', (e) => {
      e.preventDefault();
      start(scriptForm, { type: 'js', code: code.input.value });
    });
  }
  fill(main, h('h1', {}, 'Tasks'),
    h('section.card', { 'aria-label': 'Start a task' }, h('h2', {}, 'Start a task'), delayForm, scriptForm),
    h('h2', {}, 'Your tasks'), list);
  const page = await get(`/tasks${query({ limit: 20 })}`);
  for (const task of page.items) list.append(taskCard(task));
  if (!page.items.length) list.append(h('p.muted', {}, 'No tasks yet.'));
}
