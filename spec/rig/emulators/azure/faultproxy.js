// A fault-injecting reverse proxy for storage emulators (any HTTP service):
//
//   node faultproxy.js UPSTREAM_PORT STATE_FILE
//
// listens on a free 127.0.0.1 port, forwards every request to
// 127.0.0.1:UPSTREAM_PORT unchanged (signatures stay valid: they cover the
// path, not the port), and writes "PORT PID" to STATE_FILE once listening.
// Faults are queued through the proxy itself and each hits one request:
//
//   PUT /__fault/503?count=N            answer 503 ServerBusy without forwarding
//   PUT /__fault/drop-request?count=N   read a little of the request, then close the connection
//   PUT /__fault/drop-response?count=N  forward, send the headers and half the body, then close
//   PUT /__fault/clear                  forget queued faults
//   GET /__stats                        {"requests": n, "faults": n, "queued": n}
'use strict';
const http = require('http');
const fs = require('fs');

const upstream = Number(process.argv[2]);
const stateFile = process.argv[3];
const queue = [];
const stats = { requests: 0, faults: 0 };

function control(req, res) {
  const url = new URL(req.url, 'http://x');
  const mode = url.pathname.slice('/__fault/'.length);
  if (url.pathname === '/__stats') {
    res.end(JSON.stringify({ ...stats, queued: queue.length }));
  } else if (mode === 'clear') {
    queue.length = 0;
    res.end('ok');
  } else if (['503', 'drop-request', 'drop-response'].includes(mode)) {
    const count = Number(url.searchParams.get('count') || 1);
    for (let i = 0; i < count; i++) queue.push(mode);
    res.end('ok');
  } else {
    res.statusCode = 400;
    res.end('unknown fault ' + mode);
  }
}

function busy(req, res) {
  req.resume();
  req.on('end', () => {
    res.writeHead(503, { 'Content-Type': 'application/xml', 'x-ms-error-code': 'ServerBusy' });
    res.end('<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>' +
      '<Message>The server is busy (injected by faultproxy.js).</Message></Error>');
  });
}

function dropRequest(req) {
  const close = () => req.socket.destroy();
  req.once('data', close);
  req.once('end', close);
}

function forward(req, res, dropResponse) {
  const up = http.request({ host: '127.0.0.1', port: upstream, method: req.method, path: req.url, headers: req.headers },
    (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      if (!dropResponse) return ur.pipe(res);
      let cut = false;
      ur.on('data', (chunk) => {
        if (cut) return;
        cut = true;
        res.write(chunk.subarray(0, Math.max(1, chunk.length >> 1)));
        setTimeout(() => res.socket.destroy(), 20);
      });
      ur.on('end', () => { if (!cut) res.socket.destroy(); });
    });
  up.on('error', () => res.socket && res.socket.destroy());
  req.pipe(up);
}

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/__fault/') || req.url === '/__stats') return control(req, res);
  stats.requests++;
  const fault = queue.shift();
  if (fault) stats.faults++;
  if (fault === '503') return busy(req, res);
  if (fault === 'drop-request') return dropRequest(req);
  forward(req, res, fault === 'drop-response');
});
server.keepAliveTimeout = 5000;
server.listen(0, '127.0.0.1', () => {
  fs.writeFileSync(stateFile, `${server.address().port} ${process.pid}\n`);
});
