// The person's projects, and a form to create one.

import { h, fill, field, showProblem, clearProblem } from '../dom.js';
import { get, post, query } from '../api.js';

export async function renderProjects(main, { user, go }) {
  const list = h('ul#project-list');
  const all = h('input', { type: 'checkbox', name: 'all' });
  const name = field('Name', h('input', { name: 'name', required: true, maxlength: 200 }));
  const description = field('Description', h('textarea', { name: 'description' }));
  const form = h('form.stack.card#new-project', { novalidate: true, 'aria-label': 'New project' },
    h('h2', {}, 'New project'), name.wrap, description.wrap,
    h('p.form-error.error', { role: 'alert' }),
    h('div', {}, h('button', { type: 'submit' }, 'Create project')));

  async function load() {
    const page = await get(`/projects${query({ limit: 100, all: all.checked ? 'true' : '' })}`);
    fill(list, page.items.map((p) => h('li', {},
      h('a', { href: `#/projects/${encodeURIComponent(p.id)}` }, p.name),
      ' ', h('span.badge', {}, p.role), p.description ? h('span.muted', {}, ` — ${p.description}`) : null)));
    if (!page.items.length) list.append(h('li.muted', {}, 'No projects yet.'));
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearProblem(form);
    try {
      const body = { name: name.input.value };
      if (description.input.value.trim()) body.description = description.input.value;
      const project = await post('/projects', body);
      go(`#/projects/${encodeURIComponent(project.id)}`);
    } catch (err) {
      showProblem(form, err.problem || { detail: err.message });
    }
  });
  all.addEventListener('change', load);
  fill(main, h('h1', {}, 'Projects'),
    h('div.grid2', {},
      h('section', { 'aria-label': 'Your projects' },
        user.level === 'admin' ? h('label', {}, all, ' Every project (admin)') : null,
        list),
      form));
  await load();
}
