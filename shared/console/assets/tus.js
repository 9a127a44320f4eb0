// A small tus 1.0.0 client over fetch: create (POST), find the offset
// (HEAD), send chunks (PATCH), abort (DELETE). About a hundred lines, so no
// library: the console needs only the core protocol and termination.
//
// An upload's URL is kept in localStorage under the file's name, size and
// modification time (and the user), so choosing the same file again after
// a reload, or after the connection dropped, resumes where the server
// says it stopped.

import { session, seg, endSession } from './api.js';

export const CHUNK = 1024 * 1024; // at most 4 MiB on AWS (a Lambda payload)
const TUS = { 'Tus-Resumable': '1.0.0' };

function b64(text) {
  let bin = '';
  for (const byte of new TextEncoder().encode(text)) bin += String.fromCharCode(byte);
  return btoa(bin);
}

function key(file) {
  const user = session()?.user?.username || '';
  return `taskgate.tus:${user}:${file.name}:${file.size}:${file.lastModified}`;
}

/** The upload URL kept for `file`, if any. */
export function remembered(file) {
  return localStorage.getItem(key(file));
}

function auth() {
  const s = session();
  return s ? { Authorization: `Bearer ${s.token}` } : {};
}

async function problemOf(response) {
  const body = await response.json().catch(() => null);
  if (response.status === 401) endSession('Your session ended. Please log in again.');
  const e = new Error(body?.detail || `The server answered ${response.status}.`);
  e.status = response.status;
  e.problem = body || {};
  return e;
}

/**
 * Where the server says the upload stands; null if it does not know it, or
 * (with `orUnreachable`) if the server cannot be reached.
 */
async function offsetOf(url, signal, { orUnreachable = false } = {}) {
  let r;
  try {
    r = await fetch(url, { method: 'HEAD', headers: { ...TUS, ...auth() }, signal, cache: 'no-store' });
  } catch (e) {
    if (orUnreachable && e.name !== 'AbortError') return null;
    throw e;
  }
  if (!r.ok) return null;
  const offset = Number(r.headers.get('Upload-Offset'));
  return Number.isSafeInteger(offset) && offset >= 0 ? offset : null;
}

async function create(file, signal) {
  const meta = `filename ${b64(file.name)},filetype ${b64(file.type || 'application/octet-stream')}`;
  const r = await fetch('/files', {
    method: 'POST',
    headers: { ...TUS, ...auth(), 'Upload-Length': String(file.size), 'Upload-Metadata': meta },
    signal,
  });
  if (r.status !== 201) throw await problemOf(r);
  return new URL(r.headers.get('Location'), location.href).pathname;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Uploads `file`, resuming a remembered upload. `onProgress(sent, total,
 * resumedFrom)`; `onStart(url)` once the upload exists; `onRetry(seconds)`
 * when the connection dropped and the next try is that far off. `signal`
 * pauses (the upload is kept); use `abort` to remove it. Resolves to the
 * file id.
 */
export async function upload(file, { onProgress = () => {}, onStart = () => {}, onRetry = () => {}, signal } = {}) {
  const k = key(file);
  let url = localStorage.getItem(k);
  let offset = url ? await offsetOf(url, signal) : null;
  const resumedFrom = offset;
  if (offset === null) {
    url = await create(file, signal);
    localStorage.setItem(k, url);
    offset = 0;
  }
  onStart(url);
  onProgress(offset, file.size, resumedFrom);
  let failures = 0;
  while (offset < file.size) {
    try {
      const r = await fetch(url, {
        method: 'PATCH',
        headers: {
          ...TUS, ...auth(),
          'Content-Type': 'application/offset+octet-stream',
          'Upload-Offset': String(offset),
        },
        body: file.slice(offset, offset + CHUNK),
        signal,
      });
      if (r.status === 204) {
        // Every accepted chunk moves the offset on, or the loop would not end.
        const next = Number(r.headers.get('Upload-Offset'));
        if (!Number.isSafeInteger(next) || next <= offset || next > file.size) {
          throw new Error(`The server answered an offset of ${r.headers.get('Upload-Offset')} after ${offset}; choose the file again to resume.`);
        }
        offset = next;
        failures = 0;
      } else if (r.status === 409 || r.status === 423) {
        // Another offset, or the upload still held by a request that was
        // cut: ask again, after a growing wait, a bounded number of times.
        if (++failures > 8) throw await problemOf(r);
        await sleep(Math.min(500 * 2 ** failures, 8000));
        offset = (await offsetOf(url, signal)) ?? offset;
      } else if (r.status === 404) {
        localStorage.removeItem(k);
        throw await problemOf(r);
      } else {
        throw await problemOf(r);
      }
    } catch (e) {
      if (e.name === 'AbortError' || e.status) throw e;
      // The connection dropped: wait, ask where the server is (which may
      // fail the same way: then the next PATCH is refused with 409 and
      // the offset asked again), go on.
      if (++failures > 8) throw new Error('The connection keeps failing; choose the file again to resume.');
      const wait = Math.min(500 * 2 ** failures, 8000);
      onRetry(wait / 1000);
      await sleep(wait);
      offset = (await offsetOf(url, signal, { orUnreachable: true })) ?? offset;
    }
    onProgress(offset, file.size, resumedFrom);
  }
  localStorage.removeItem(k);
  return url.split('/').pop();
}

/** Aborts an upload: nothing of it stays on the server. */
export async function abort(file, url) {
  localStorage.removeItem(key(file));
  if (!url) return;
  const r = await fetch(url, { method: 'DELETE', headers: { ...TUS, ...auth() } });
  if (r.status !== 204 && r.status !== 404) throw await problemOf(r);
}

/** Deletes a finished file. */
export async function remove(id) {
  const r = await fetch(`/files/${seg(id)}`, { method: 'DELETE', headers: { ...TUS, ...auth() } });
  if (r.status !== 204) throw await problemOf(r);
}
