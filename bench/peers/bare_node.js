// The Node.js ceiling: the benchmark handler behind a plain `http` server
// (one process, keep-alive), and the upstream that the watchdog pattern
// proxies to. It builds the same event the platform builds (JSON bodies
// parsed) and maps return values the same way (objects -> JSON).
//
// Usage: node bare_node.js PORT HANDLER_FILE HANDLER_NAME
'use strict';
const http = require('http');
const path = require('path');

const [port, file, name] = process.argv.slice(2);
const handler = require(path.resolve(file))[name];
const context = { 'function-name': name, timeout: 180 };

http
  .createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const type = (req.headers['content-type'] || '').split(';')[0].trim();
      let data = {};
      if (body.length) data = type === 'application/json' ? JSON.parse(body) : body.toString();
      const result = handler({ data, 'event-id': req.headers['event-id'] }, context);
      if (typeof result === 'string' || Buffer.isBuffer(result)) {
        res.end(result);
      } else {
        res.setHeader('Content-Type', 'application/json; charset=utf-8');
        res.end(JSON.stringify(result));
      }
    });
  })
  .listen(Number(port), '127.0.0.1');
