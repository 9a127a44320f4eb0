// A project's board: its items in columns by status, kept live from the
// project's feed; create, edit (with If-Match), assign, move, delete; an
// item's history; the members and their roles; exports of the project.

import { h, fill, field, select, showProblem, clearProblem, toast, when, newest } from '../dom.js';
import { get, post, patch, put, del, seg, query } from '../api.js';
import { subscribe } from '../live.js';
import { STATUSES, statusLabel, filterForm, today } from './items.js';
import { taskCard } from './tasks.js';

export async function renderBoard(main, { user, params, go }) {
  const id = params[0];
  const base = `/projects/${seg(id)}`;
  let project = await get(base);
  let members = [];
  const items = new Map(); // id → item
  const gone = new Set(); // deleted ids (a late event must not bring one back)
  const heading = h('h1');
  const role = h('span.badge');
  const columns = Object.fromEntries(STATUSES.map(([s, label]) =>
    [s, h('ul', { 'aria-label': label, dataset: { column: s } })]));
  const memberList = h('ul#member-list');
  const banner = h('p.notice', { role: 'status', hidden: true });
  const exports = h('div.grid2');
  const filters = filterForm(() => reload());
  const dialog = h('dialog#item-dialog', { 'aria-labelledby': 'item-dialog-title' });
  const isAdmin = () => project.role === 'admin';

  function showHeader() {
    heading.textContent = project.name;
    role.textContent = `your role: ${project.role}`;
  }

  function filtered() {
    const p = filters.params();
    return Boolean(p.status || p.due || p.assignee);
  }

  function draw() {
    for (const ul of Object.values(columns)) fill(ul);
    const sorted = [...items.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    for (const item of sorted) columns[item.status]?.append(card(item));
    for (const [s, ul] of Object.entries(columns)) {
      if (!ul.children.length) ul.append(h('li.muted', {}, 'Nothing here.'));
      ul.closest('section').querySelector('h2 .count').textContent = ` (${[...items.values()].filter((i) => i.status === s).length})`;
    }
  }

  function upsert(item) {
    if (gone.has(item.id)) return;
    const known = items.get(item.id);
    if (!known || known.version <= item.version) items.set(item.id, item);
  }

  const start = newest();

  async function reload() {
    const current = start();
    clearProblem(filters.form);
    try {
      const page = await get(`${base}/items${query({ ...filters.params(), limit: 100 })}`);
      if (!current()) return;
      items.clear();
      for (const item of page.items) upsert(item);
      draw();
    } catch (e) {
      if (current()) showProblem(filters.form, e.problem || { detail: e.message });
    }
  }

  async function loadMembers() {
    members = (await get(`${base}/members`)).items;
    fill(memberList, members.map(memberRow));
  }

  function card(item) {
    const overdue = item.due_date && item.due_date < today() && item.status !== 'completed';
    const i = STATUSES.findIndex(([s]) => s === item.status);
    const move = (to) => h('button.secondary', {
      type: 'button',
      'aria-label': `Move “${item.title}” to ${statusLabel(to)}`,
      onclick: () => save(item, { status: to }),
    }, i > STATUSES.findIndex(([s]) => s === to) ? `◀ ${statusLabel(to)}` : `${statusLabel(to)} ▶`);
    return h('li.item-card', { dataset: { item: item.id, status: item.status } },
      h('div.title', {}, item.title),
      item.description ? h('div', {}, item.description) : null,
      h('div.meta', {},
        item.due_date ? h('span', { class: overdue ? 'overdue' : '' }, `due ${item.due_date}${overdue ? ' (overdue)' : ''} · `) : null,
        item.assignee ? `→ ${item.assignee} · ` : 'unassigned · ', `v${item.version}`),
      h('div.actions', {},
        i > 0 ? move(STATUSES[i - 1][0]) : null,
        i < STATUSES.length - 1 ? move(STATUSES[i + 1][0]) : null,
        h('button.secondary', { type: 'button', 'aria-label': `Edit “${item.title}”`, onclick: () => edit(item.id) }, 'Edit'),
        h('button.secondary', { type: 'button', 'aria-label': `History of “${item.title}”`, onclick: () => history(item) }, 'History'),
        isAdmin() || item.created_by === user.username
          ? h('button.danger', { type: 'button', 'aria-label': `Delete “${item.title}”`, onclick: (e) => remove(item, e.currentTarget) }, 'Delete')
          : null));
  }

  async function save(item, changes) {
    try {
      const updated = await patch(`${base}/items/${seg(item.id)}`, changes, { headers: { 'If-Match': `"${item.version}"` } });
      upsert(updated);
      draw();
    } catch (e) {
      if (e.status === 412) {
        toast('Someone changed this item first; open it to see their version.');
        upsert(await get(`${base}/items/${seg(item.id)}`));
        draw();
      } else toast(e.message);
    }
  }

  async function remove(item, button) {
    // Two presses: the first asks, the second deletes.
    if (button.dataset.armed !== 'yes') {
      button.dataset.armed = 'yes';
      button.textContent = 'Really delete?';
      return;
    }
    try {
      await del(`${base}/items/${seg(item.id)}`);
      gone.add(item.id);
      items.delete(item.id);
      draw();
    } catch (e) { toast(e.message); }
  }

  function assigneeSelect(value) {
    return select('assignee', [['', 'Nobody'], ...members.map((m) => [m.username, m.username])], value || '');
  }

  // --- The item form (new, or edit with If-Match) ---------------------------
  function itemForm(item, onSubmit) {
    const f = {
      title: field('Title', h('input', { name: 'title', required: true, maxlength: 200, value: item?.title || '' })),
      description: field('Description', h('textarea', { name: 'description' }, item?.description || '')),
      status: field('Status', select('status', STATUSES, item?.status || 'pending')),
      due_date: field('Due date', h('input', { name: 'due_date', type: 'date', value: item?.due_date || '' })),
      assignee: field('Assignee', assigneeSelect(item?.assignee)),
    };
    const form = h('form.stack', { novalidate: true },
      Object.values(f).map((x) => x.wrap), h('p.form-error.error', { role: 'alert' }));
    const values = () => ({
      title: f.title.input.value,
      description: f.description.input.value || null,
      status: f.status.input.value,
      due_date: f.due_date.input.value || null,
      assignee: f.assignee.input.value || null,
    });
    form.addEventListener('submit', (e) => { e.preventDefault(); clearProblem(form); onSubmit(values(), form); });
    return { form, f, values };
  }

  function newItemForm() {
    const { form, f } = itemForm(null, async (values, form) => {
      const body = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== null && v !== ''));
      try {
        const item = await post(`${base}/items`, body, { headers: { 'Idempotency-Key': crypto.randomUUID() } });
        upsert(item);
        draw();
        form.reset();
        f.title.input.focus();
      } catch (e) { showProblem(form, e.problem || { detail: e.message }); }
    });
    form.id = 'new-item';
    form.setAttribute('aria-label', 'New item');
    form.append(h('div', {}, h('button', { type: 'submit' }, 'Add item')));
    return h('section.card', {}, h('h2', {}, 'New item'), form);
  }

  async function edit(itemId) {
    let item = await get(`${base}/items/${seg(itemId)}`);
    const conflict = h('div.notice#conflict', { role: 'alert', hidden: true });
    const { form } = itemForm(item, async (changes, form) => {
      try {
        const updated = await patch(`${base}/items/${seg(item.id)}`, changes, { headers: { 'If-Match': `"${item.version}"` } });
        upsert(updated);
        draw();
        dialog.close();
      } catch (e) {
        if (e.status !== 412) { showProblem(form, e.problem || { detail: e.message }); return; }
        // Lost the race: show what is there now, keep what the person typed.
        const newer = await get(`${base}/items/${seg(item.id)}`);
        upsert(newer);
        draw();
        item = newer;
        fill(conflict,
          h('strong', {}, `Someone else saved this item first (now version ${newer.version}).`),
          h('dl.newer', {}, [['title', 'Title'], ['status', 'Status'], ['due_date', 'Due date'],
            ['assignee', 'Assignee'], ['description', 'Description']].flatMap(([k, label]) =>
            [h('dt', {}, label), h('dd', { dataset: { newer: k } },
              k === 'status' ? statusLabel(newer[k]) : newer[k] ?? '—')])),
          h('p', {}, 'Your changes are still in the form. Save again to apply them over this version, or keep theirs.'),
          h('div.row', {},
            h('button', { type: 'button', onclick: () => form.requestSubmit() }, 'Save my changes again'),
            h('button.secondary', { type: 'button', onclick: () => { dialog.close(); } }, 'Keep theirs')));
        conflict.hidden = false;
      }
    });
    form.append(h('div.row', {}, h('button', { type: 'submit' }, 'Save'),
      h('button.secondary', { type: 'button', onclick: () => dialog.close() }, 'Cancel')));
    fill(dialog, h('h2#item-dialog-title', {}, `Edit “${item.title}”`), conflict, form);
    dialog.showModal();
    form.querySelector('input').focus();
  }

  async function history(item) {
    const list = h('ol.history');
    fill(dialog, h('h2#item-dialog-title', {}, `History of “${item.title}”`), list,
      h('button', { type: 'button', onclick: () => dialog.close() }, 'Close'));
    dialog.showModal();
    const events = (await get(`${base}/items/${seg(item.id)}/events`)).items;
    fill(list, events.map((e) => h('li', {},
      h('strong', {}, e.type), ` by ${e.actor || 'the system'}, ${when(e.at)}`,
      e.data ? h('div.muted', {}, describe(e)) : null)));
  }

  function describe(e) {
    const d = e.data || {};
    const changes = d.changes || d.fields || d;
    return Object.entries(changes).filter(([k]) => !['id', 'project_id', 'created_by'].includes(k))
      .map(([k, v]) => `${k}: ${typeof v === 'object' && v !== null ? JSON.stringify(v) : v ?? '—'}`).join('; ');
  }

  // --- Members --------------------------------------------------------------
  function memberRow(m) {
    const owner = m.username === project.owner;
    const self = m.username === user.username;
    const roleSelect = select('role', [['member', 'member'], ['admin', 'admin']], m.role);
    roleSelect.setAttribute('aria-label', `Role of ${m.username}`);
    roleSelect.addEventListener('change', async () => {
      try { await put(`${base}/members/${seg(m.username)}`, { role: roleSelect.value }); await loadMembers(); } catch (e) { toast(e.message); roleSelect.value = m.role; }
    });
    const canManage = isAdmin() && !owner;
    return h('li', { dataset: { member: m.username } },
      h('span', {}, m.username), ' ',
      canManage ? roleSelect : h('span.badge', {}, owner ? 'owner' : m.role), ' ',
      (canManage || (self && !owner))
        ? h('button.danger', {
          type: 'button',
          'aria-label': self ? 'Leave the project' : `Remove ${m.username}`,
          onclick: async () => {
            try {
              await del(`${base}/members/${seg(m.username)}`);
              if (self) go('#/projects'); else await loadMembers();
            } catch (e) { toast(e.message); }
          },
        }, self ? 'Leave' : 'Remove')
        : null);
  }

  function memberForm() {
    if (!isAdmin()) return null;
    const username = field('Username', h('input', { name: 'username', required: true, autocomplete: 'off' }));
    const r = field('Role', select('role', [['member', 'member'], ['admin', 'admin']]));
    const form = h('form.inline#add-member', { novalidate: true, 'aria-label': 'Add a member' },
      username.wrap, r.wrap, h('button', { type: 'submit' }, 'Add member'), h('p.form-error.error', { role: 'alert' }));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearProblem(form);
      try {
        await put(`${base}/members/${seg(username.input.value.trim())}`, { role: r.input.value });
        form.reset();
        await loadMembers();
      } catch (err) {
        const problem = err.problem || { detail: err.message };
        if (err.status === 404) problem.errors = [{ field: 'username', message: problem.detail || 'No such user.' }];
        showProblem(form, problem);
      }
    });
    return form;
  }

  // --- Exports of the project -----------------------------------------------
  function exportButtons() {
    const start = async (format) => {
      try {
        const task = await post('/tasks', { type: 'export', project: id, format }, { headers: { 'Idempotency-Key': crypto.randomUUID() } });
        exports.prepend(taskCard(task, { title: `Export (${format})` }));
      } catch (e) { toast(e.message); }
    };
    return h('div.row', {}, h('span', {}, 'Export this project:'),
      h('button.secondary', { type: 'button', onclick: () => start('csv') }, 'Export CSV'),
      h('button.secondary', { type: 'button', onclick: () => start('ndjson') }, 'Export NDJSON'));
  }

  // --- Live -----------------------------------------------------------------
  let refresh = null;
  const unsubscribe = subscribe(`project:${id}`, (event) => {
    const kind = event.kind || '';
    if (kind.startsWith('item.')) {
      if (filtered()) { clearTimeout(refresh); refresh = setTimeout(reload, 150); return; }
      if (kind === 'item.deleted') { gone.add(event.item.id); items.delete(event.item.id); } else upsert(event.item);
      draw();
    } else if (kind.startsWith('member.')) {
      loadMembers().catch(() => {});
      if (kind === 'member.removed') reload();
    } else if (kind === 'project.updated') {
      project = { ...project, ...event.project };
      showHeader();
    } else if (kind === 'project.deleted') {
      banner.textContent = 'This project was deleted.';
      banner.hidden = false;
    }
  }, {
    onError: (m) => {
      banner.textContent = m.status === 404 ? 'You are no longer a member of this project.' : m.detail;
      banner.hidden = false;
    },
  });

  showHeader();
  fill(main,
    h('div.row', {}, heading, role),
    project.description ? h('p.muted', {}, project.description) : null,
    banner, filters.form,
    h('div.board#board', {}, STATUSES.map(([s, label]) =>
      h('section.column', { 'aria-label': label }, h('h2', {}, label, h('span.count.muted')), columns[s]))),
    h('div.grid2', {}, newItemForm(),
      h('section.card#members', { 'aria-label': 'Members' }, h('h2', {}, 'Members'), memberList, memberForm())),
    h('section#exports', { 'aria-label': 'Exports' }, h('h2', {}, 'Exports'), exportButtons(), exports),
    dialog);
  await Promise.all([reload(), loadMembers()]);
  return unsubscribe;
}

