// The console's entry: the session, the navigation and a hash router
// (#/items, #/projects/ID, …) so every page is the one HTML document and
// reloads land where the person was. Views render into <main> and return a
// cleanup function (their live subscriptions end with them).

import { h, fill } from './dom.js';
import { session, onSessionEnd, logout, get } from './api.js';
import * as live from './live.js';
import { renderLogin } from './views/login.js';
import { renderItems } from './views/items.js';
import { renderProjects } from './views/projects.js';
import { renderBoard } from './views/board.js';
import { renderTasks } from './views/tasks.js';
import { renderFiles } from './views/files.js';
import { renderUsers, renderAudit } from './views/admin.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const whoami = document.getElementById('whoami');
const logoutButton = document.getElementById('logout');
const liveStatus = document.getElementById('live');
let cleanup = null;
let endedBecause = '';

const PAGES = [
  ['#/items', 'My items', renderItems],
  ['#/projects', 'Projects', renderProjects],
  ['#/tasks', 'Tasks', renderTasks],
  ['#/files', 'Files', renderFiles],
  ['#/users', 'Users', renderUsers, 'admin'],
  ['#/audit', 'Audit log', renderAudit, 'admin'],
];

function route() {
  const [path, ...rest] = (location.hash || '#/items').split('?')[0].split('/').slice(1);
  return { path: `#/${path || 'items'}`, params: rest.map(decodeURIComponent) };
}

function showNav(user) {
  const current = route().path;
  fill(nav, PAGES.filter((p) => !p[3] || user.level === p[3]).map(([href, label]) =>
    h('a', { href, 'aria-current': href === current ? 'page' : null }, label)));
  nav.hidden = false;
  whoami.textContent = `${user.username} (${user.level})`;
  logoutButton.hidden = false;
}

function hideNav() {
  nav.hidden = true;
  fill(nav);
  whoami.textContent = '';
  logoutButton.hidden = true;
  liveStatus.hidden = true;
}

// Each render is numbered; one still loading when the person moves on (a
// later render started) is dropped when it returns, and its view writes
// into a container no longer on the page.
let rendering = 0;

async function render() {
  const mine = ++rendering;
  if (cleanup) { try { cleanup(); } catch { /* view gone */ } }
  cleanup = null;
  const s = session();
  if (!s) {
    hideNav();
    live.stop();
    document.title = 'Log in · Taskgate';
    renderLogin(main, { message: endedBecause, onLogin: () => { endedBecause = ''; live.start(); go('#/items'); } });
    return;
  }
  showNav(s.user);
  const { path, params } = route();
  let page = PAGES.find((p) => p[0] === path && (!p[3] || s.user.level === p[3]));
  if (path === '#/projects' && params.length) page = ['', 'Board', renderBoard];
  if (!page) page = PAGES[0];
  document.title = `${page[1]} · Taskgate`;
  const view = h('div.view');
  fill(main, view);
  let done = null;
  try {
    done = await page[2](view, { user: s.user, params, go });
  } catch (e) {
    fill(view, h('h1', {}, page[1]), h('p.error', { role: 'alert' }, e.message));
  }
  if (mine !== rendering) {
    if (done) { try { done(); } catch { /* view gone */ } }
    return;
  }
  cleanup = done;
  if (document.activeElement === document.body) main.focus({ preventScroll: true });
}

export function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

window.addEventListener('hashchange', render);
logoutButton.addEventListener('click', () => logout());
onSessionEnd((reason) => {
  endedBecause = reason;
  live.stop();
  render();
});
live.onStatus((text) => {
  liveStatus.hidden = !text;
  liveStatus.textContent = text ? `● ${text}` : '';
});

// An expired token is noticed on the next call; check it at once on load.
if (session()) {
  live.start();
  get('/').catch(() => {});
}
render();
