// Log in with a username or an e-mail address.

import { h, fill, field, showProblem, clearProblem } from '../dom.js';
import { login } from '../api.js';

export function renderLogin(main, { message, onLogin }) {
  const user = field('Username or e-mail', h('input', { name: 'login', autocomplete: 'username', required: true }));
  const password = field('Password', h('input', {
    name: 'password', type: 'password', autocomplete: 'current-password', required: true,
  }));
  const form = h('form.stack.card#login-form', { novalidate: true },
    user.wrap, password.wrap,
    h('p.form-error.error', { role: 'alert' }),
    h('div', {}, h('button', { type: 'submit' }, 'Log in')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearProblem(form);
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      await login(user.input.value.trim(), password.input.value);
      onLogin();
    } catch (err) {
      const problem = { ...(err.problem || {}), errors: (err.problem?.errors || []).map((x) => ({
        ...x, field: x.field === 'username' || x.field === 'email' ? 'login' : x.field,
      })) };
      showProblem(form, problem);
      button.disabled = false;
    }
  });
  fill(main,
    h('h1', {}, 'Log in'),
    message ? h('p.notice#session-message', { role: 'status' }, message) : null,
    form);
  user.input.focus();
}
