// DOM helpers. Every piece of text reaches the page as a text node or an
// attribute value, never as markup: data cannot become HTML here.

/** h('tag.class#id', {attrs, on*: handlers}, ...children) → an element. */
export function h(spec, props = {}, ...children) {
  const [tagAndClasses, id] = spec.split('#');
  const [tag, ...classes] = tagAndClasses.split('.');
  const el = document.createElement(tag || 'div');
  if (id) el.id = id;
  if (classes.length) el.className = classes.join(' ');
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key in el && typeof value !== 'string') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let fieldCounter = 0;

/** A labelled input: returns {wrap, input, error}. */
export function field(label, input, hint) {
  const id = `f${++fieldCounter}`;
  input.id = id;
  if (!input.name) input.name = label.toLowerCase().replace(/[^a-z]+/g, '_');
  const error = h('span.field-error', { id: `${id}-error`, role: 'alert' });
  input.setAttribute('aria-describedby', `${id}-error`);
  const wrap = h('div.field', {}, h('label', { for: id }, label), input,
    hint ? h('span.muted', {}, hint) : null, error);
  return { wrap, input, error };
}

/** A <select> with [value, label] options. */
export function select(name, options, value) {
  const el = h('select', { name });
  for (const [v, label] of options) el.append(h('option', { value: v }, label));
  if (value !== undefined) el.value = value;
  return el;
}

/**
 * Shows an API problem on a form: each `errors[].field` next to the input
 * of that name, everything else in the form's general error slot.
 */
export function showProblem(form, problem) {
  clearProblem(form);
  const general = form.querySelector('.form-error');
  let placed = false;
  for (const e of problem.errors || []) {
    const input = form.querySelector(`[name="${CSS.escape(e.field)}"]`);
    const slot = input && document.getElementById(`${input.id}-error`);
    if (slot) {
      slot.textContent = e.message;
      input.setAttribute('aria-invalid', 'true');
      if (!placed) input.focus();
      placed = true;
    }
  }
  if (general && (!placed || !(problem.errors || []).length)) {
    general.textContent = problem.detail || problem.title || 'Something went wrong.';
  }
}

export function clearProblem(form) {
  for (const el of form.querySelectorAll('.field-error, .form-error')) el.textContent = '';
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}

/** A brief message at the bottom of the screen. */
export function toast(text) {
  const el = document.getElementById('toast');
  el.textContent = text;
  el.classList.add('shown');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove('shown'), 4000);
}

/** "2026-12-04T10:00:00.000Z" → the person's local date and time. */
export function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** Bytes in words. */
export function size(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * newest() → a function that starts a call and returns `isNewest()`, true
 * while no later call has started. A list loads again on every filter
 * change; answers can arrive out of order, and only the newest call's may
 * reach the page.
 */
export function newest() {
  let latest = 0;
  return () => {
    const mine = ++latest;
    return () => mine === latest;
  };
}

