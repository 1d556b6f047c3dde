'use strict';
// Kubeless Node.js worker: loads the user's handler once and answers framed
// requests from the runtime host (kubeless-runtime) over a Unix socket.
// Standard library only. The wire format is described in
// docs/runtime-host.md.
//
// The host sets: KUBELESS_WORKER_SOCKET, KUBELESS_INSTALL_VOLUME (code dir,
// also the working directory), MOD_NAME, FUNC_HANDLER, FUNC_TIMEOUT,
// FUNC_RUNTIME, FUNC_MEMORY_LIMIT.

const net = require('net');
const path = require('path');
const Module = require('module');

const KIND_READY = 1;
const KIND_LOAD_FAILED = 2;
const KIND_REQUEST = 3;
const KIND_RESPONSE = 4;
const OUTCOME_OK = 0;
const OUTCOME_HANDLER_ERROR = 1;
const OUTCOME_BAD_REQUEST = 2;

const EMPTY = Buffer.alloc(0);
const env = process.env;
const codeDir = env.KUBELESS_INSTALL_VOLUME || '/kubeless';
const modName = env.MOD_NAME;
const funcName = env.FUNC_HANDLER;

function blob(buf) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(buf.length);
  return [len, buf];
}

function frame(parts) {
  const payload = Buffer.concat(parts);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(payload.length);
  return Buffer.concat([len, payload]);
}

// Encodes a whole RESPONSE frame (length prefix included) into one buffer
// sized up front: one allocation and one socket write per response.
// `headers` is a flat [name, value, name, value, ...] list of strings.
function encodeResponse(id, outcome, status, headers, body, error) {
  const bodyBuf = body || EMPTY;
  const errorBuf = error ? Buffer.from(error, 'utf8') : EMPTY;
  let size = 4 + 1 + 8 + 1 + 2 + 4 + 4 + bodyBuf.length + 4 + errorBuf.length;
  for (let i = 0; i < headers.length; i++) size += 4 + Buffer.byteLength(headers[i], 'latin1');
  const out = Buffer.allocUnsafe(size);
  let pos = out.writeUInt32BE(size - 4, 0);
  pos = out.writeUInt8(KIND_RESPONSE, pos);
  pos = out.writeBigUInt64BE(id, pos);
  pos = out.writeUInt8(outcome, pos);
  pos = out.writeUInt16BE(status, pos);
  pos = out.writeUInt32BE(headers.length / 2, pos);
  for (let i = 0; i < headers.length; i++) {
    const n = out.write(headers[i], pos + 4, 'latin1');
    out.writeUInt32BE(n, pos);
    pos += 4 + n;
  }
  pos = out.writeUInt32BE(bodyBuf.length, pos);
  pos += bodyBuf.copy(out, pos);
  pos = out.writeUInt32BE(errorBuf.length, pos);
  errorBuf.copy(out, pos);
  return out;
}

function decodeRequest(payload) {
  let pos = 1; // kind, checked by the caller
  const id = payload.readBigUInt64BE(pos);
  pos += 8;
  const take = () => {
    const n = payload.readUInt32BE(pos);
    pos += 4;
    const out = payload.subarray(pos, pos + n);
    if (out.length !== n) throw new Error('truncated frame');
    pos += n;
    return out;
  };
  const method = take().toString('utf8');
  const reqPath = take().toString('utf8');
  const query = take().toString('utf8');
  const count = payload.readUInt32BE(pos);
  pos += 4;
  const headers = {};
  for (let i = 0; i < count; i++) {
    const name = take().toString('latin1');
    const value = take().toString('latin1');
    // Repeated headers fold like Node's http module does for most names.
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  const body = Buffer.from(take());
  return { id, method, path: reqPath, query, headers, body };
}

function isJson(contentType) {
  if (!contentType) return false;
  return contentType.split(';', 1)[0].trim().toLowerCase() === 'application/json';
}

function parseQuery(qs) {
  const out = {};
  for (const [k, v] of new URLSearchParams(qs)) {
    if (k in out) out[k] = [].concat(out[k], v);
    else out[k] = v;
  }
  return out;
}

// A small, express-like request object. Methods live on the prototype and
// the query string is parsed on first use: nothing per request that the
// handler does not ask for.
class Request {
  constructor(r) {
    const url = r.query ? `${r.path}?${r.query}` : r.path;
    this.method = r.method;
    this.url = url;
    this.originalUrl = url;
    this.path = r.path;
    this.headers = r.headers;
    this.body = r.body;
    this._qs = r.query;
    this._query = undefined;
  }

  get query() {
    if (this._query === undefined) this._query = this._qs ? parseQuery(this._qs) : {};
    return this._query;
  }

  set query(value) {
    this._query = value;
  }

  get(name) {
    return this.headers[String(name).toLowerCase()];
  }

  header(name) {
    return this.get(name);
  }
}

// A small, express-like response object. Whatever the handler sets on it is
// what the client gets.
class Response {
  constructor() {
    this.statusCode = 200;
    this.headers = {};
    this.chunks = [];
    this.used = false;
    this.headersSent = false;
    this.finished = false;
  }

  status(code) {
    this.used = true;
    this.statusCode = Number(code);
    return this;
  }

  sendStatus(code) {
    return this.status(code).send(String(code));
  }

  set(name, value) {
    this.used = true;
    if (typeof name === 'object' && name !== null) {
      for (const k of Object.keys(name)) this.set(k, name[k]);
    } else {
      this.headers[String(name).toLowerCase()] = Array.isArray(value) ? value.map(String) : String(value);
    }
    return this;
  }

  header(name, value) {
    return this.set(name, value);
  }

  setHeader(name, value) {
    this.set(name, value);
  }

  get(name) {
    return this.headers[String(name).toLowerCase()];
  }

  getHeader(name) {
    return this.get(name);
  }

  removeHeader(name) {
    delete this.headers[String(name).toLowerCase()];
  }

  type(value) {
    const short = { json: 'application/json', html: 'text/html', text: 'text/plain' };
    return this.set('content-type', short[value] || value);
  }

  writeHead(code, headers) {
    this.status(code);
    if (headers) this.set(headers);
    return this;
  }

  write(chunk) {
    this.used = true;
    this.chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk));
    return true;
  }

  end(chunk) {
    if (chunk !== undefined && chunk !== null) this.write(chunk);
    this.used = true;
    this.finished = true;
    this.headersSent = true;
    return this;
  }

  send(body) {
    if (body === undefined || body === null) return this.end();
    if (Buffer.isBuffer(body)) {
      if (!this.get('content-type')) this.set('content-type', 'application/octet-stream');
      return this.end(body);
    }
    if (typeof body === 'object') return this.json(body);
    if (!this.get('content-type')) this.set('content-type', 'text/html; charset=utf-8');
    return this.end(String(body));
  }

  json(obj) {
    if (!this.get('content-type')) this.set('content-type', 'application/json; charset=utf-8');
    const text = JSON.stringify(obj);
    return this.end(text === undefined ? '' : text);
  }
}

// Response headers as the flat [name, value, ...] list encodeResponse takes.
function headerList(headers, extraName, extraValue) {
  const out = [];
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (Array.isArray(value)) for (const v of value) out.push(name, String(v));
    else out.push(name, String(value));
  }
  if (extraName !== undefined && headers[extraName] === undefined) out.push(extraName, extraValue);
  return out;
}

function describeLoadError(err) {
  if (err && err.code === 'MODULE_NOT_FOUND' && String(err.message).includes(path.join(codeDir, modName))) {
    return `module "${modName}" not found in ${codeDir}`;
  }
  if (err instanceof SyntaxError && typeof err.stack === 'string') {
    // Node puts "<file>:<line>" on the first stack line of a syntax error.
    const first = err.stack.split('\n', 1)[0];
    const m = first.match(/([^/\\]+):(\d+)$/);
    const where = m ? ` (${m[1]}, line ${m[2]})` : '';
    return `SyntaxError: ${err.message}${where}`;
  }
  const name = err && err.name ? err.name : 'Error';
  const message = err && err.message !== undefined ? err.message : String(err);
  return `${name}: ${message}`.replace(/\n/g, ' ');
}

function load() {
  // Packages resolve from <code dir>/node_modules even for requires that do
  // not start in the code dir.
  const nodeModules = path.join(codeDir, 'node_modules');
  process.env.NODE_PATH = [nodeModules, env.NODE_PATH].filter(Boolean).join(path.delimiter);
  Module._initPaths();
  process.chdir(codeDir);
  let exported;
  try {
    exported = require(path.join(codeDir, modName));
  } catch (err) {
    return { reason: describeLoadError(err) };
  }
  if (typeof exported === 'function') return { handler: exported };
  const handler = exported ? exported[funcName] : undefined;
  if (handler === undefined) return { reason: `module "${modName}" has no function "${funcName}"` };
  if (typeof handler !== 'function') return { reason: `"${funcName}" in module "${modName}" is not callable` };
  return { handler };
}

const JSON_TYPE = 'application/json; charset=utf-8';

// The RESPONSE frame for what the handler returned (or put in `res`).
function encodeResult(id, res, result) {
  let body;
  let type;
  if (res.finished) {
    body = Buffer.concat(res.chunks);
  } else if (result === undefined) {
    body = res.chunks.length ? Buffer.concat(res.chunks) : EMPTY;
  } else if (typeof result === 'string') {
    body = Buffer.from(result);
  } else if (Buffer.isBuffer(result)) {
    body = result;
  } else {
    // Objects, null, numbers, booleans: JSON, like Kubeless' res.json().
    const text = JSON.stringify(result);
    body = Buffer.from(text === undefined ? '' : text);
    type = JSON_TYPE;
  }
  const headers = type === undefined ? headerList(res.headers) : headerList(res.headers, 'content-type', type);
  return encodeResponse(id, OUTCOME_OK, res.statusCode, headers, body, '');
}

function failed(id, err) {
  console.error('Function returned an exception');
  console.error(err && err.stack ? err.stack : err);
  return encodeResponse(id, OUTCOME_HANDLER_ERROR, 500, [], null, '');
}

// Calls the handler. Returns the response frame, or a promise of it when
// the handler returned one: a synchronous handler costs no promise.
function invoke(handler, context, r) {
  let data = {};
  if (r.body.length > 0) {
    if (isJson(r.headers['content-type'])) {
      try {
        data = JSON.parse(r.body.toString('utf8'));
      } catch (err) {
        return encodeResponse(r.id, OUTCOME_BAD_REQUEST, 400, [], null, `Invalid JSON in request body: ${err.message}\n`);
      }
    } else {
      data = r.body.toString('utf8');
    }
  }
  const req = new Request(r);
  const res = new Response();
  const event = {
    'event-type': r.headers['event-type'],
    'event-id': r.headers['event-id'],
    'event-time': r.headers['event-time'],
    'event-namespace': r.headers['event-namespace'],
    data,
    extensions: { request: req, response: res },
  };
  const id = r.id;
  let result;
  try {
    result = handler(event, context);
  } catch (err) {
    return failed(id, err);
  }
  if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
    return Promise.resolve(result).then(
      (value) => settle(id, res, value),
      (err) => failed(id, err)
    );
  }
  return settle(id, res, result);
}

// encodeResult, with a result that cannot be encoded (a circular object,
// say) answered as a handler error.
function settle(id, res, result) {
  try {
    return encodeResult(id, res, result);
  } catch (err) {
    return failed(id, err);
  }
}

function main() {
  const socket = net.createConnection(env.KUBELESS_WORKER_SOCKET);
  // The host is gone: exit instead of lingering as an orphan.
  socket.on('close', () => process.exit(0));
  socket.on('error', () => process.exit(0));

  socket.once('connect', () => {
    const loaded = load();
    if (!loaded.handler) {
      socket.end(frame([Buffer.from([KIND_LOAD_FAILED]), ...blob(Buffer.from(loaded.reason, 'utf8'))]));
      return;
    }
    const handler = loaded.handler;
    const context = {
      'function-name': funcName,
      timeout: Number(env.FUNC_TIMEOUT || '180'),
      runtime: env.FUNC_RUNTIME || '',
      'memory-limit': env.FUNC_MEMORY_LIMIT || '',
    };
    socket.write(frame([Buffer.from([KIND_READY])]));

    // Requests are answered one at a time, in order, even when a handler
    // returns a promise: the host may queue the next request in the socket
    // while this one runs, and relies on the oldest unanswered request
    // being the only one in a handler.
    let buffered = Buffer.alloc(0);
    let busy = false;
    const next = () => {
      while (!busy && buffered.length >= 4) {
        const n = buffered.readUInt32BE(0);
        if (buffered.length < 4 + n) return;
        const payload = buffered.subarray(4, 4 + n);
        buffered = buffered.subarray(4 + n);
        if (payload[0] !== KIND_REQUEST) {
          console.error(`kubeless worker: unexpected message kind ${payload[0]}`);
          process.exit(2);
        }
        const out = invoke(handler, context, decodeRequest(payload));
        if (Buffer.isBuffer(out)) {
          socket.write(out);
        } else {
          busy = true;
          out.then((frameOut) => {
            socket.write(frameOut);
            busy = false;
            next();
          });
        }
      }
    };
    socket.on('data', (chunk) => {
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      next();
    });
  });
}

main();
