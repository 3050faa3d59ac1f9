// The API as the page calls it: relative URLs (so that the page also works
// under a proxy's path prefix), the bearer token when the user gave one, and
// errors that carry the API's JSON message.

// ApiError is an answer other than 2xx, or no answer at all (status 0).
export class ApiError extends Error {
  constructor(status, message, body, retryAfter = 0) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.body = body; // the API's JSON error body, or null
    this.retryAfter = retryAfter; // seconds the server asked to wait (Retry-After), or 0
  }

  // field is the request field the API names as wrong, if any.
  get field() {
    return this.body && typeof this.body.field === 'string' ? this.body.field : '';
  }
}

// The token lives in this module's memory only: never in storage, never in
// a URL. Behind an OAuth proxy or the console's proxy there is none, and the
// proxy adds it.
let token = '';

export function setToken(t) {
  token = t.trim();
}

export function hasToken() {
  return token !== '';
}

// url resolves path against the page's own address.
export function url(path) {
  return new URL(path, document.baseURI).href;
}

function headers(extra) {
  const h = new Headers(extra);
  if (token) h.set('Authorization', 'Bearer ' + token);
  return h;
}

// request sends one request and returns the response when it is 2xx; any
// other answer throws an ApiError with the API's message.
export async function request(path, { method = 'GET', body, headers: extra, signal } = {}) {
  let resp;
  try {
    resp = await fetch(url(path), { method, body, headers: headers(extra), signal, cache: 'no-store', credentials: 'same-origin' });
  } catch (e) {
    if (signal && signal.aborted) throw e;
    throw new ApiError(0, 'The server did not answer (' + e.message + ').', null);
  }
  if (!resp.ok) throw await errorOf(resp);
  return resp;
}

export async function getJSON(path, opts) {
  const resp = await request(path, opts);
  return resp.json();
}

export async function postJSON(path, value) {
  const resp = await request(path, { method: 'POST', body: JSON.stringify(value), headers: { 'Content-Type': 'application/json' } });
  return resp.json();
}

async function errorOf(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    // Not the API's JSON: a proxy's page, say.
  }
  let message = body && typeof body.error === 'string' && body.error !== '' ? body.error : resp.status + ' ' + resp.statusText;
  const field = body && typeof body.field === 'string' ? body.field : '';
  if (field && !message.startsWith(field)) message = field + ': ' + message;
  const retryAfter = /^\d+$/.test(resp.headers.get('Retry-After') || '') ? Number(resp.headers.get('Retry-After')) : 0;
  if (resp.status === 429 && retryAfter) message += ' (try again in ' + retryAfter + ' s)';
  return new ApiError(resp.status, message, body, retryAfter);
}
