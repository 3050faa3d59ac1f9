// The page: the list of gatherings kept live by the event stream, the form
// that starts one, a gathering's output, and downloads. Everything the API
// returns reaches the page as text (textContent), never as markup.

import { ApiError, getJSON, hasToken, postJSON, request, setToken, url } from './api.js';
import { subscribe } from './sse.js';

const $ = (id) => document.getElementById(id);

// How often the list is read again where the server has no event stream.
const pollInterval = 5000;

const gatherings = new Map(); // id -> the gathering as the API last told
const rows = new Map(); // id -> its <tr>
let selected = 0; // the id shown in the detail view
let live = null; // AbortController of the event stream
let poller = 0;

const isFinal = (status) => status === 'completed' || status === 'error';

// merge keeps g unless what the page has is newer: a list read before an
// event may arrive after it, and a final status is never undone.
function merge(g, { quiet = false } = {}) {
  const old = gatherings.get(g.id);
  if (old) {
    if (isFinal(old.status) && !isFinal(g.status)) return;
    if (Date.parse(g['updated-at']) < Date.parse(old['updated-at'])) return;
  }
  gatherings.set(g.id, g);
  renderRow(g);
  if (selected === g.id) renderDetail(g);
  if (old && old.status !== g.status && !quiet) announce('Gathering ' + label(g) + ' is ' + g.status + '.');
}

function label(g) {
  return g['custom-name'] ? g.id + ' (' + g['custom-name'] + ')' : String(g.id);
}

function announce(text) {
  $('announce').textContent = text;
}

// showError puts what went wrong, with the API's own message, in the alert
// region; a 401 also asks for a token.
function showError(what, e) {
  const alert = $('alert');
  const status = e instanceof ApiError && e.status ? ' (HTTP ' + e.status + ')' : '';
  alert.textContent = what + status + ': ' + (e.message || String(e));
  alert.hidden = false;
  if (e instanceof ApiError && (e.status === 401 || e.status === 403)) askToken(e);
}

function clearError() {
  $('alert').hidden = true;
  $('alert').textContent = '';
}

function formatSize(n) {
  if (!n) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
}

function formatTime(s) {
  const t = Date.parse(s);
  return Number.isNaN(t) ? s : new Date(t).toLocaleString();
}

// downloadable tells what the archive of g can be had as, if anything.
function downloadable(g) {
  if (g.status === 'completed') return { partial: false, text: 'Download' };
  if (g.status === 'error' && g['archive-size'] > 0) return { partial: true, text: 'Download partial' };
  return null;
}

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

function button(text, ariaLabel, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.setAttribute('aria-label', ariaLabel);
  b.addEventListener('click', onClick);
  return b;
}

function statusBadge(status) {
  const s = document.createElement('span');
  s.className = 'status';
  s.dataset.status = status;
  s.textContent = status;
  return s;
}

function renderRow(g) {
  let tr = rows.get(g.id);
  if (!tr) {
    tr = document.createElement('tr');
    tr.dataset.id = String(g.id);
    rows.set(g.id, tr);
    // Newest first.
    const tbody = $('gatherings').tBodies[0];
    const after = [...tbody.rows].find((r) => Number(r.dataset.id) < g.id);
    tbody.insertBefore(tr, after || null);
    $('empty').hidden = true;
  }
  const actions = document.createElement('td');
  actions.className = 'actions';
  actions.append(button('Show', 'Show gathering ' + label(g), () => select(g.id, true)));
  const d = downloadable(g);
  const dl = button(d ? d.text : 'Download', 'Download the archive of gathering ' + label(g), () => download(gatherings.get(g.id)));
  dl.disabled = !d;
  dl.className = 'download';
  actions.append(dl);
  // Keep the keyboard where it was when a row is redrawn.
  const focused = tr.contains(document.activeElement) ? document.activeElement.textContent : '';
  const statusCell = document.createElement('td');
  statusCell.append(statusBadge(g.status));
  tr.replaceChildren(
    cell(String(g.id)),
    cell(g['custom-name'] || ''),
    statusCell,
    cell(formatTime(g['created-at'])),
    cell(g['archive-name'] ? g['archive-name'] + ' ' + formatSize(g['archive-size']) : ''),
    actions,
  );
  if (focused) {
    const again = [...actions.querySelectorAll('button')].find((b) => b.textContent === focused && !b.disabled);
    if (again) again.focus();
  }
}

function renderDetail(g) {
  $('detail').hidden = false;
  $('detail-h').textContent = 'Gathering ' + label(g);
  const fields = [
    ['Status', g.status],
    ['Command', g.command],
    ['Image', g.image || g['image-stream']],
    ['Cluster', g.server],
    ['Timeout', g.timeout],
    ['Requested by', g['requested-by']],
    ['Started', formatTime(g['created-at'])],
    ['Updated', formatTime(g['updated-at'])],
    ['Archive', g['archive-name'] ? g['archive-name'] + ' (' + formatSize(g['archive-size']) + ')' : ''],
  ];
  const dl = $('detail-fields');
  dl.replaceChildren();
  for (const [name, value] of fields) {
    if (!value) continue;
    const dt = document.createElement('dt');
    dt.textContent = name;
    const dd = document.createElement('dd');
    if (name === 'Status') dd.append(statusBadge(value));
    else dd.textContent = value;
    dl.append(dt, dd);
  }
  const d = downloadable(g);
  const b = $('detail-download');
  b.disabled = !d;
  b.textContent = d && d.partial ? 'Download what was gathered' : 'Download the archive';
  // Pod output is text: textContent, so nothing in it can become markup.
  const out = $('output');
  const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
  out.textContent = g['exec-output'] || '';
  if (atEnd) out.scrollTop = out.scrollHeight;
}

function select(id, focus) {
  selected = id;
  const g = gatherings.get(id);
  if (!g) return;
  renderDetail(g);
  if (focus) $('detail-h').focus();
}

async function loadList() {
  try {
    const list = await getJSON('must-gather');
    for (const g of list) merge(g, { quiet: true });
    $('empty').hidden = gatherings.size > 0;
  } catch (e) {
    showError('Could not list the gatherings', e);
  }
}

// save hands href to the browser as a download named name.
function save(href, name) {
  const a = document.createElement('a');
  a.href = href;
  if (name) a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
}

// download gets g's archive: from a presigned link when the server makes
// one (no token needed to follow it), else from /data, through fetch when
// a token must go with it, or as a plain link when none is needed.
async function download(g) {
  clearError();
  const d = downloadable(g);
  if (!d) return;
  const base = 'must-gather/' + encodeURIComponent(g.id);
  try {
    if (!d.partial) {
      try {
        const link = await getJSON(base + '/url');
        save(link.url, g['archive-name']);
        announce('Downloading ' + g['archive-name'] + '.');
        return;
      } catch (e) {
        // A server without presigned links: /data it is.
        if (![404, 405, 501].includes(e.status)) throw e;
      }
    }
    const data = base + '/data' + (d.partial ? '?partial=true' : '');
    if (hasToken()) {
      const blob = await (await request(data)).blob();
      const href = URL.createObjectURL(blob);
      save(href, g['archive-name']);
      setTimeout(() => URL.revokeObjectURL(href), 60000);
    } else {
      await request(data, { method: 'HEAD' }); // errors as JSON, not as a saved file
      save(url(data), g['archive-name']);
    }
    announce('Downloading ' + g['archive-name'] + '.');
  } catch (e) {
    showError('Could not download the archive of gathering ' + label(g), e);
  }
}

// Live updates: the event stream of every gathering, or, where the server
// serves none, the list read again every few seconds.
function setLive(text, state) {
  const p = $('live');
  p.textContent = 'Live updates: ' + text;
  p.dataset.state = state;
}

function startLive() {
  if (live) live.abort();
  clearInterval(poller);
  live = new AbortController();
  subscribe('events', {
    signal: live.signal,
    onEvent: (e) => {
      if (e.type !== 'gathering') return;
      try {
        merge(JSON.parse(e.data));
      } catch {
        // Not a gathering: ignore it.
      }
    },
    onConnected: (resumed) => {
      setLive('on', 'on');
      // Subscribed first, listed second: nothing falls between the two.
      if (!resumed) loadList();
    },
    onState: (state, detail) => {
      switch (state) {
        case 'connecting':
          setLive('connecting…', 'connecting');
          break;
        case 'waiting':
          setLive('lost the connection' + (detail.error ? ' (' + detail.error.message + ')' : '') +
            '; trying again in ' + Math.ceil(detail.ms / 1000) + ' s', 'waiting');
          break;
        case 'unauthorized':
          setLive(detail.status === 401 ? 'need a token' : 'not allowed for this user', 'unauthorized');
          askToken(detail);
          break;
        case 'unavailable':
          setLive('not served here; the list refreshes every ' + pollInterval / 1000 + ' s', 'polling');
          poller = setInterval(loadList, pollInterval);
          break;
      }
    },
  });
}

function restart() {
  clearError();
  loadList();
  startLive();
}

// The token form: shown on a 401, or when the user asks for it.
function showTokenForm(show) {
  $('token-section').hidden = !show;
  $('token-toggle').setAttribute('aria-expanded', String(show));
}

function askToken(e) {
  $('token-reason').textContent = (e.status === 403
    ? 'This user may not do that: ' + e.message + '. Enter the token of a cluster administrator (oc whoami -t).'
    : 'The API asks for a bearer token: ' + e.message + '. Enter the token of a cluster administrator (oc whoami -t).');
  showTokenForm(true);
  $('token').focus();
}

function updateTokenState() {
  $('token-state').textContent = hasToken()
    ? 'A token is set, kept in this page\'s memory only: reloading the page forgets it.'
    : 'No token is set. It is kept in this page\'s memory only: reloading the page forgets it.';
}

// The form shows the fields of the kind of gathering chosen; the fields of
// the other kinds are disabled, so they are not sent.
function updateKind() {
  const form = $('start-form');
  const kind = form.elements.kind.value;
  for (const field of form.querySelectorAll('[data-kinds]')) {
    const on = field.dataset.kinds.split(' ').includes(kind);
    field.hidden = !on;
    for (const input of field.querySelectorAll('input')) input.disabled = !on;
  }
}

function clearFieldErrors(form) {
  for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
}

async function start(ev) {
  ev.preventDefault();
  const form = ev.target;
  clearError();
  clearFieldErrors(form);
  const body = {};
  for (const [name, value] of new FormData(form)) {
    if (name !== 'kind' && value.trim() !== '') body[name] = value.trim();
  }
  // A checkbox says what it shows, checked or not: unchecked must be able
  // to turn off what the server does by default (redact).
  for (const box of form.querySelectorAll('input[type="checkbox"]')) {
    if (!box.disabled) body[box.name] = box.checked;
  }
  const submit = $('start');
  submit.disabled = true;
  try {
    const g = await postJSON('must-gather', body);
    merge(g);
    $('empty').hidden = true;
    select(g.id, false);
    announce('Gathering ' + label(g) + ' started.');
  } catch (e) {
    showError('Could not start the gathering', e);
    const input = e.field && form.elements[e.field];
    if (input && input.focus && !input.disabled) {
      input.setAttribute('aria-invalid', 'true');
      const more = input.closest('details');
      if (more) more.open = true;
      input.focus();
    }
  } finally {
    submit.disabled = false;
  }
}

function init() {
  const form = $('start-form');
  for (const radio of form.elements.kind) radio.addEventListener('change', updateKind);
  updateKind();
  form.addEventListener('submit', start);
  $('refresh').addEventListener('click', () => { clearError(); loadList(); });
  $('detail-download').addEventListener('click', () => {
    const g = gatherings.get(selected);
    if (g) download(g);
  });
  $('token-toggle').addEventListener('click', () => {
    const show = $('token-section').hidden;
    showTokenForm(show);
    if (show) $('token').focus();
  });
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    setToken($('token').value);
    $('token').value = '';
    updateTokenState();
    showTokenForm(false);
    restart();
  });
  $('token-forget').addEventListener('click', () => {
    setToken('');
    updateTokenState();
    restart();
  });
  updateTokenState();
  restart();
}

init();
