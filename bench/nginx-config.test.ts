import { describe, expect, it } from 'vitest';
import { nginxConfig } from './nginx-config.ts';

const conf = nginxConfig({ listenPort: 18080, upstreamHost: '127.0.0.1', upstreamPort: 19000, dir: '/tmp/vg-nginx-x' });

/** The body of the first `name … {` block (braces balanced). */
function block(text: string, name: string): string {
  const start = text.indexOf(`${name} {`);
  if (start < 0) throw new Error(`no ${name} block`);
  let depth = 0;
  for (let i = text.indexOf('{', start); i < text.length; i++) {
    if (text[i] === '{') depth++;
    if (text[i] === '}' && --depth === 0) return text.slice(text.indexOf('{', start) + 1, i);
  }
  throw new Error(`unbalanced ${name} block`);
}

describe('nginxConfig', () => {
  it('runs in the foreground with one worker, everything it writes in the run directory', () => {
    for (const d of ['daemon off;', 'master_process on;', 'worker_processes 1;', 'pid /tmp/vg-nginx-x/nginx.pid;', 'error_log /tmp/vg-nginx-x/error.log warn;', 'access_log off;']) {
      expect(conf).toContain(d);
    }
    for (const m of conf.matchAll(/_temp_path (\S+);/g)) expect(m[1]!.startsWith('/tmp/vg-nginx-x/')).toBe(true);
    expect([...conf.matchAll(/_temp_path /g)]).toHaveLength(5);
  });

  it('listens on loopback only, on the port given', () => {
    expect(block(conf, 'server')).toMatch(/^\s*listen 127\.0\.0\.1:18080;$/m);
    expect(conf.match(/^\s*listen /gm)).toHaveLength(1);
  });

  it('proxies through a keep-alive pool of 64 over HTTP/1.1, never sending the client Connection header upstream', () => {
    const up = block(conf, 'upstream bench_upstream');
    expect(up).toContain('server 127.0.0.1:19000;');
    expect(up).toMatch(/^\s*keepalive 64;$/m);
    const loc = block(conf, 'location /');
    expect(loc).toContain('proxy_pass http://bench_upstream;');
    expect(loc).toContain('proxy_http_version 1.1;');
    // REST requests have no Upgrade header: the map turns that into an empty Connection header.
    expect(loc).toContain('proxy_set_header Connection $connection_upgrade;');
    expect(block(conf, 'map $http_upgrade $connection_upgrade')).toMatch(/^\s*'' '';$/m);
  });

  it('streams answers unbuffered (SSE) and passes WebSocket upgrades through', () => {
    const loc = block(conf, 'location /');
    expect(loc).toContain('proxy_buffering off;');
    expect(loc).toContain('proxy_set_header Upgrade $http_upgrade;');
    expect(block(conf, 'map $http_upgrade $connection_upgrade')).toMatch(/^\s*default upgrade;$/m);
  });

  it('takes the pool size and connection limit from the options', () => {
    const c = nginxConfig({ listenPort: 1, upstreamHost: 'localhost', upstreamPort: 2, dir: '/d', keepalive: 8, workerConnections: 100 });
    expect(c).toMatch(/^\s*keepalive 8;$/m);
    expect(c).toMatch(/^\s*worker_connections 100;$/m);
    expect(c).toContain('worker_rlimit_nofile 200;');
  });

  it('refuses values that would break out of a directive', () => {
    const ok = { listenPort: 18080, upstreamHost: '127.0.0.1', upstreamPort: 19000, dir: '/tmp/x' };
    expect(() => nginxConfig({ ...ok, dir: '/tmp/x; user root' })).toThrow(RangeError);
    expect(() => nginxConfig({ ...ok, dir: 'relative' })).toThrow(RangeError);
    expect(() => nginxConfig({ ...ok, upstreamHost: 'a;b' })).toThrow(RangeError);
    expect(() => nginxConfig({ ...ok, listenPort: 0 })).toThrow(RangeError);
    expect(() => nginxConfig({ ...ok, upstreamPort: 70_000 })).toThrow(RangeError);
  });
});
