// "My items": work items across the person's projects as a table, with the
// API's filters and sorts. "Today" is the browser's time zone (`tz`).

import { h, fill, field, select, showProblem, clearProblem, newest } from '../dom.js';
import { get, query } from '../api.js';

export const STATUSES = [['pending', 'Pending'], ['in_progress', 'In progress'], ['completed', 'Completed']];
export const statusLabel = (s) => (STATUSES.find(([v]) => v === s) || [s, s])[1];
export const timeZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

/** Today's date (YYYY-MM-DD) in the browser's time zone. */
export function today() {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

/** The filter form shared by "My items" and a board: returns {form, params()}. */
export function filterForm(onChange, { assignee = '' } = {}) {
  const statusBoxes = STATUSES.map(([v, label]) => h('label', {}, h('input', { type: 'checkbox', name: 'status', value: v }), ` ${label}`));
  const due = field('Due', select('due', [['', 'Any time'], ['overdue', 'Overdue'], ['today', 'Today'], ['future', 'Later']]));
  const who = field('Assignee', h('input', { name: 'assignee', value: assignee, placeholder: 'me, none or a name', size: 14 }));
  const sort = field('Sort', select('sort', [
    ['-created_at', 'Newest first'], ['created_at', 'Oldest first'], ['due_date', 'Due soonest'],
    ['-due_date', 'Due latest'], ['status', 'Status'], ['-status', 'Status, reversed']]));
  const form = h('form.inline#filters', { 'aria-label': 'Filters' },
    h('fieldset.row', {}, h('legend', {}, 'Status'), statusBoxes),
    due.wrap, who.wrap, sort.wrap,
    h('button.secondary', { type: 'submit' }, 'Apply'),
    h('p.form-error.error', { role: 'alert' }));
  const params = () => ({
    status: [...form.querySelectorAll('input[name=status]:checked')].map((c) => c.value).join(','),
    due: due.input.value,
    tz: due.input.value ? timeZone() : '',
    assignee: who.input.value.trim(),
    sort: sort.input.value,
  });
  form.addEventListener('submit', (e) => { e.preventDefault(); onChange(); });
  form.addEventListener('change', (e) => { if (e.target.name !== 'assignee') onChange(); });
  return { form, params };
}

export async function renderItems(main) {
  const projects = new Map();
  const body = h('tbody');
  const more = h('button.secondary', { type: 'button', hidden: true }, 'More');
  let next = null;
  const filters = filterForm(() => load(false), { assignee: 'me' });

  const start = newest();

  async function load(append) {
    const current = start();
    clearProblem(filters.form);
    try {
      const page = await get(`/items${query({ ...filters.params(), limit: 50, cursor: append ? next : '' })}`);
      if (!current()) return;
      if (!append) fill(body);
      for (const item of page.items) body.append(row(item));
      if (!body.children.length) body.append(h('tr', {}, h('td', { colspan: 5 }, 'No items match.')));
      next = page.next;
      more.hidden = !next;
    } catch (e) {
      if (current()) showProblem(filters.form, e.problem || { detail: e.message });
    }
  }

  function row(item) {
    const overdue = item.due_date && item.due_date < today() && item.status !== 'completed';
    return h('tr', { dataset: { item: item.id } },
      h('td', {}, h('a', { href: `#/projects/${encodeURIComponent(item.project_id)}` }, item.title)),
      h('td', {}, projects.get(item.project_id) || item.project_id),
      h('td', {}, statusLabel(item.status)),
      h('td', { class: overdue ? 'overdue' : '' }, item.due_date || '—', overdue ? ' (overdue)' : ''),
      h('td', {}, item.assignee || '—'));
  }

  more.addEventListener('click', () => load(true));
  fill(main, h('h1', {}, 'My items'), filters.form,
    h('div.table-wrap', {}, h('table#items-table', {},
      h('caption.muted', {}, `Dates in ${timeZone()}`),
      h('thead', {}, h('tr', {}, ['Title', 'Project', 'Status', 'Due', 'Assignee'].map((t) => h('th', { scope: 'col' }, t)))),
      body)),
    more);
  try {
    const list = await get('/projects?limit=100');
    for (const p of list.items) projects.set(p.id, p.name);
  } catch { /* names are a nicety */ }
  await load(false);
}
