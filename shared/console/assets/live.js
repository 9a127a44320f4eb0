// Live updates from /ws. One socket per tab; views subscribe to topics.
// The token goes in the subprotocol list (`taskgate.bearer.<token>`), never
// in the URL. A dropped socket reconnects (1 s, 2 s, … 15 s) and each topic
// resubscribes with `after` = the last seq it saw, so nothing is missed;
// seqs already seen are dropped. Close code 4401 (token revoked or
// expired) ends the session at once.

import { session, endSession, get } from './api.js';

const topics = new Map(); // topic → {handlers: Set, last: seq|null, onReset: Set}
let socket = null;
let retry = 0;
let timer = null;
let stopped = true;
const statusListeners = new Set();

function setStatus(text) {
  for (const fn of statusListeners) fn(text);
}

/** Calls fn('live' | 'reconnecting…' | 'offline') as the socket changes. */
export function onStatus(fn) {
  statusListeners.add(fn);
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function subscribeMessage(topic) {
  const t = topics.get(topic);
  const m = { type: 'subscribe', topic };
  if (t && t.last !== null && topic !== 'tasks') m.after = t.last;
  return m;
}

/** Starts the socket (after login). */
export function start() {
  stopped = false;
  connect();
}

/** Closes the socket and forgets every subscription (logout). */
export function stop() {
  stopped = true;
  clearTimeout(timer);
  topics.clear();
  if (socket) socket.close(1000, 'logout');
  socket = null;
  setStatus('');
}

function connect() {
  const s = session();
  if (stopped || !s) return;
  // Here, /ws; on AWS the page names the stack's WebSocket API.
  const elsewhere = document.querySelector('meta[name="taskgate-websocket"]')?.content;
  const url = elsewhere || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  const ws = new WebSocket(url, ['taskgate', `taskgate.bearer.${s.token}`]);
  socket = ws;
  ws.onopen = () => {
    retry = 0;
    setStatus('live');
    for (const topic of topics.keys()) send(subscribeMessage(topic));
  };
  ws.onmessage = (e) => {
    let m;
    try { m = JSON.parse(e.data); } catch { return; }
    const t = m.topic && topics.get(m.topic);
    if (!t) return;
    if (m.type === 'event') {
      if (typeof m.seq === 'number') {
        if (t.last !== null && m.seq <= t.last) return; // seen already
        t.last = m.seq;
      }
      for (const fn of t.handlers) fn(m.event, m);
    } else if (m.type === 'error') {
      for (const fn of t.errors) fn(m);
    }
  };
  ws.onclose = async (e) => {
    if (socket !== ws) return;
    socket = null;
    if (stopped) return;
    if (e.code === 4401) {
      endSession('Your session was ended (signed out elsewhere, or revoked).');
      return;
    }
    // Refused before the upgrade? A 401 there means the token is gone.
    try { await get('/'); } catch (err) { if (err.status === 401) return; }
    setStatus('reconnecting…');
    retry = Math.min(retry + 1, 5);
    timer = setTimeout(connect, [0, 1000, 2000, 4000, 8000, 15000][retry]);
  };
}

/**
 * Subscribes to `topic`; `onEvent(event, message)` for each event. Returns
 * an unsubscribe function. `after` starts the feed after that seq.
 */
export function subscribe(topic, onEvent, { after = null, onError } = {}) {
  let t = topics.get(topic);
  if (!t) {
    t = { handlers: new Set(), errors: new Set(), last: after };
    topics.set(topic, t);
    send(subscribeMessage(topic));
  }
  t.handlers.add(onEvent);
  if (onError) t.errors.add(onError);
  return () => {
    t.handlers.delete(onEvent);
    if (onError) t.errors.delete(onError);
    if (!t.handlers.size && topics.get(topic) === t) {
      topics.delete(topic);
      send({ type: 'unsubscribe', topic });
    }
  };
}
