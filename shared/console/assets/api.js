// The API client: every call carries the token as `Authorization: Bearer`.
// The token lives in sessionStorage (this tab only, gone with it), never in
// a cookie or a URL, so no other site can make the browser act with it.

const KEY = 'taskgate.session';
const listeners = new Set();

/** The current session: {token, expiresAt, user} or null. */
export function session() {
  try {
    const s = JSON.parse(sessionStorage.getItem(KEY));
    if (s && s.token && Date.parse(s.expiresAt) > Date.now()) return s;
  } catch { /* nothing stored */ }
  return null;
}

function store(s) {
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
  else sessionStorage.removeItem(KEY);
}

/** Called with the reason whenever the session ends (logout, 401, expiry). */
export function onSessionEnd(fn) {
  listeners.add(fn);
}

/** Forgets the token at once and tells everyone. */
export function endSession(reason) {
  if (!session() && !sessionStorage.getItem(KEY)) return;
  store(null);
  for (const fn of listeners) fn(reason);
}

/** An error the API answered (problem+json), or a network failure. */
export class ApiError extends Error {
  constructor(status, problem, response) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.response = response;
  }
}

/**
 * Calls the API. `body` is sent as JSON; `headers` add to the defaults.
 * Resolves to {status, headers, body} (body parsed when JSON). A 401 on an
 * authenticated call ends the session.
 */
export async function call(method, path, { body, headers = {}, raw, signal } = {}) {
  const s = session();
  const h = { ...headers };
  if (s) h.Authorization = `Bearer ${s.token}`;
  let payload = raw;
  if (body !== undefined) {
    h['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers: h, body: payload, signal, cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { title: 'Network error', detail: 'The server could not be reached.' });
  }
  const type = response.headers.get('Content-Type') || '';
  let parsed = null;
  if (type.includes('json')) parsed = await response.json().catch(() => null);
  if (!response.ok) {
    const problem = parsed || { title: response.statusText, detail: `The server answered ${response.status}.` };
    if (response.status === 401 && s) endSession('Your session ended (signed out or expired). Please log in again.');
    throw new ApiError(response.status, problem, response);
  }
  return { status: response.status, headers: response.headers, body: parsed, response };
}

export const get = (path, opts) => call('GET', path, opts).then((r) => r.body);
export const post = (path, body, opts = {}) => call('POST', path, { ...opts, body }).then((r) => r.body);
export const patch = (path, body, opts = {}) => call('PATCH', path, { ...opts, body }).then((r) => r.body);
export const put = (path, body, opts = {}) => call('PUT', path, { ...opts, body }).then((r) => r.body);
export const del = (path, opts) => call('DELETE', path, opts).then((r) => r.body);

/** Logs in by username or e-mail (whichever `login` looks like). */
export async function login(login, password) {
  const body = login.includes('@') ? { email: login, password } : { username: login, password };
  const answer = await post('/auth', body);
  store({ token: answer.token, expiresAt: answer.expires_at, user: null });
  try {
    const me = await get('/');
    store({ token: answer.token, expiresAt: answer.expires_at, user: me.user });
  } catch (e) {
    store(null);
    throw e;
  }
  return session();
}

/** Revokes the token, then forgets it whatever the answer. */
export async function logout() {
  try { await call('DELETE', '/auth'); } catch { /* forgotten anyway */ }
  endSession('You are logged out.');
}

/** Path segment. */
export const seg = encodeURIComponent;

/** A query string from an object, skipping empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== undefined && v !== null) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

/**
 * Downloads a file of the API: the bytes come with the token (so never a
 * bare link), and are then saved under their name.
 */
export async function download(fileId, name) {
  const s = session();
  const response = await fetch(`/files/${seg(fileId)}/content`, {
    headers: s ? { Authorization: `Bearer ${s.token}` } : {},
    cache: 'no-store',
  });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({ detail: `The server answered ${response.status}.` }));
    if (response.status === 401) endSession('Your session ended. Please log in again.');
    throw new ApiError(response.status, problem, response);
  }
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name || 'download';
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
