// Admins: the users (create, change level and e-mail, delete) and the
// security log.

import { h, fill, field, select, showProblem, clearProblem, toast, when } from '../dom.js';
import { get, post, patch, del, seg, query } from '../api.js';

export async function renderUsers(main, { user: me }) {
  const body = h('tbody');
  const more = h('button.secondary', { type: 'button', hidden: true }, 'More');
  let next = null;
  const f = {
    username: field('Username', h('input', { name: 'username', required: true, autocomplete: 'off' })),
    password: field('Password', h('input', { name: 'password', type: 'password', required: true, autocomplete: 'new-password' }), '15 to 128 characters, not containing the username.'),
    email: field('E-mail (optional)', h('input', { name: 'email', type: 'email', autocomplete: 'off' })),
    level: field('Level', select('level', [['user', 'user'], ['admin', 'admin']])),
  };
  const form = h('form.stack.card#new-user', { novalidate: true, 'aria-label': 'New user' },
    h('h2', {}, 'New user'), Object.values(f).map((x) => x.wrap),
    h('p.form-error.error', { role: 'alert' }), h('div', {}, h('button', { type: 'submit' }, 'Create user')));

  async function load(append) {
    const page = await get(`/users${query({ limit: 50, cursor: append ? next : '' })}`);
    if (!append) fill(body);
    for (const u of page.items) body.append(row(u));
    next = page.next;
    more.hidden = !next;
  }

  function row(u) {
    const self = u.username === me.username;
    const level = select('level', [['user', 'user'], ['admin', 'admin']], u.level);
    level.setAttribute('aria-label', `Level of ${u.username}`);
    level.disabled = self; // the API refuses changing one's own level
    const email = h('input', { name: 'email', type: 'email', value: u.email || '', 'aria-label': `E-mail of ${u.username}`, size: 22 });
    const error = h('span.field-error', { role: 'alert' });
    const save = h('button.secondary', { type: 'button' }, 'Save');
    const remove = h('button.danger', { type: 'button', 'aria-label': `Delete ${u.username}` }, 'Delete');
    save.addEventListener('click', async () => {
      error.textContent = '';
      const changes = { email: email.value.trim() || null };
      if (!self) changes.level = level.value;
      try {
        await patch(`/users/${seg(u.username)}`, changes);
        toast(`Saved ${u.username}.`);
      } catch (e) {
        error.textContent = (e.problem?.errors || []).map((x) => `${x.field}: ${x.message}`).join('; ') || e.message;
      }
    });
    remove.addEventListener('click', async () => {
      if (remove.dataset.armed !== 'yes') { remove.dataset.armed = 'yes'; remove.textContent = 'Really delete?'; return; }
      try { await del(`/users/${seg(u.username)}`); tr.remove(); } catch (e) { error.textContent = e.message; }
    });
    const tr = h('tr', { dataset: { user: u.username } },
      h('td', {}, u.username), h('td', {}, level), h('td', {}, email, error), h('td', {}, when(u.created_at)),
      h('td.row', {}, save, self ? null : remove));
    return tr;
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearProblem(form);
    const body = { username: f.username.input.value.trim(), password: f.password.input.value, level: f.level.input.value };
    if (f.email.input.value.trim()) body.email = f.email.input.value.trim();
    try {
      await post('/users', body);
      form.reset();
      toast(`Created ${body.username}.`);
      await load(false);
    } catch (err) { showProblem(form, err.problem || { detail: err.message }); }
  });
  more.addEventListener('click', () => load(true).catch((e) => toast(e.message)));
  fill(main, h('h1', {}, 'Users'),
    h('div.grid2', {},
      h('div', {}, h('div.table-wrap', {}, h('table#user-table', {},
        h('thead', {}, h('tr', {}, ['Username', 'Level', 'E-mail', 'Created', ''].map((t) => h('th', { scope: 'col' }, t)))),
        body)), more),
      form));
  await load(false);
}

export async function renderAudit(main) {
  const body = h('tbody');
  const more = h('button.secondary', { type: 'button', hidden: true }, 'More');
  let next = null;
  async function load(append) {
    const page = await get(`/audit${query({ limit: 50, cursor: append ? next : '' })}`);
    if (!append) fill(body);
    for (const e of page.items) {
      body.append(h('tr', {},
        h('td', {}, when(e.at)), h('td', {}, e.kind), h('td', {}, e.actor || '—'), h('td', {}, e.subject || '—'),
        h('td.muted', {}, e.detail ? JSON.stringify(e.detail) : '')));
    }
    next = page.next;
    more.hidden = !next;
  }
  more.addEventListener('click', () => load(true).catch((e) => toast(e.message)));
  fill(main, h('h1', {}, 'Security and audit log'),
    h('div.table-wrap', {}, h('table#audit-table', {},
      h('thead', {}, h('tr', {}, ['When', 'What', 'Who', 'Concerning', 'Detail'].map((t) => h('th', { scope: 'col' }, t)))),
      body)), more);
  await load(false);
}
