// Server-Sent Events over fetch: a browser's EventSource cannot send an
// Authorization header, so the page reads the stream itself, parses it as
// the HTML standard says, and reconnects with Last-Event-ID and backoff.

import { request } from './api.js';

// EventStreamParser turns text chunks of a text/event-stream into calls of
// onEvent({id, type, data}), onComment(text) and onRetry(ms). Lines may end
// in CRLF, LF or CR, and may be split across chunks anywhere.
export class EventStreamParser {
  constructor({ onEvent = () => {}, onComment = () => {}, onRetry = () => {} }) {
    this.onEvent = onEvent;
    this.onComment = onComment;
    this.onRetry = onRetry;
    this.buffer = '';
    this.data = [];
    this.type = '';
    this.lastEventId = '';
  }

  push(chunk) {
    this.buffer += chunk;
    const eol = /\r\n|\r|\n/g;
    let start = 0;
    for (let m = eol.exec(this.buffer); m !== null; m = eol.exec(this.buffer)) {
      // A CR at the very end may be the first half of a CRLF.
      if (m[0] === '\r' && m.index === this.buffer.length - 1) break;
      this.line(this.buffer.slice(start, m.index));
      start = eol.lastIndex;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.startsWith(':')) {
      this.onComment(line.slice(1).trim());
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        this.data.push(value);
        break;
      case 'event':
        this.type = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.lastEventId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.onRetry(Number(value));
        break;
    }
  }

  dispatch() {
    const type = this.type || 'message';
    this.type = '';
    if (this.data.length === 0) return;
    const data = this.data.join('\n');
    this.data = [];
    this.onEvent({ id: this.lastEventId, type, data });
  }
}

// The longest wait between two attempts.
const maxDelay = 30000;

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

// subscribe reads path's event stream until signal aborts, reconnecting
// after the stream ends or fails: first after the server's retry time, then
// twice as long each failed attempt up to 30 s, with jitter, and from where
// it left off (Last-Event-ID); never sooner than a Retry-After. Callbacks:
//   onEvent({id, type, data})
//   onConnected(resumed): the server has subscribed (": connected"); resumed
//     tells whether it continues from the last event seen
//   onState(state, detail): 'connecting', 'waiting' (detail: ms until the
//     next attempt, and the error if one), or, when it gives up,
//     'unauthorized' or 'unavailable' (detail: the ApiError)
export function subscribe(path, { signal, onEvent, onConnected = () => {}, onState = () => {} }) {
  let retry = 3000;
  let failures = 0;
  let lastEventId = '';
  (async () => {
    while (!signal.aborted) {
      let error = null;
      onState('connecting');
      try {
        const headers = { Accept: 'text/event-stream' };
        if (lastEventId) headers['Last-Event-ID'] = lastEventId;
        const resp = await request(path, { headers, signal });
        const parser = new EventStreamParser({
          onEvent: (e) => {
            lastEventId = parser.lastEventId;
            onEvent(e);
          },
          onComment: (c) => {
            if (c === 'connected') {
              failures = 0;
              onConnected(lastEventId !== '');
            }
          },
          onRetry: (ms) => { retry = ms; },
        });
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.push(value);
        }
      } catch (e) {
        if (signal.aborted) return;
        if (e.status === 401 || e.status === 403) {
          onState('unauthorized', e);
          return;
        }
        if (e.status === 404 || e.status === 405 || e.status === 501) {
          onState('unavailable', e);
          return;
        }
        error = e;
      }
      if (signal.aborted) return;
      let delay = Math.min(maxDelay, retry * 2 ** Math.min(failures, 5)) * (0.8 + 0.4 * Math.random());
      // A server that is busy, starting or stopping says how long to wait.
      if (error && error.retryAfter) delay = Math.max(delay, error.retryAfter * 1000);
      failures++;
      onState('waiting', { ms: Math.round(delay), error });
      await sleep(delay, signal);
    }
  })();
}
