import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Qmp, QmpClosed } from './qmp.js';

// A QMP peer on a unix socket: it greets, then answers each line with `reply`.
let server: Server | undefined;
let dir = '';

function peer(reply: (cmd: { execute: string; arguments?: Record<string, unknown> }, sock: Socket) => void): Promise<string> {
  dir = mkdtempSync(join(tmpdir(), 'xconf-qmp-'));
  const path = join(dir, 'qmp.sock');
  server = createServer((sock) => {
    sock.write(`${JSON.stringify({ QMP: { version: { qemu: { major: 10, minor: 0, micro: 2 } }, capabilities: [] } })}\n`);
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        reply(JSON.parse(line), sock);
      }
    });
  });
  return new Promise((resolve) => server!.listen(path, () => resolve(path)));
}

afterEach(() => {
  server?.close();
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

describe('QMP client', () => {
  it('negotiates, skips events, and returns each answer or error', async () => {
    const seen: string[] = [];
    const path = await peer((cmd, sock) => {
      seen.push(cmd.execute);
      if (cmd.execute === 'qmp_capabilities') sock.write('{"return": {}}\n');
      else if (cmd.arguments?.port === 0) sock.write('{"error": {"class": "GenericError", "desc": "Invalid port 0"}}\n');
      // An event arrives first, and the answer comes in two pieces.
      else sock.write('{"event": "RESUME", "timestamp": {"seconds": 1}}\n{"return": ') && setTimeout(() => sock.write(`{"port": ${String(cmd.arguments?.port)}}}\n`), 5);
    });
    const q = await Qmp.open(path);
    expect(await q.execute('xen-event-inject', { port: 3 })).toEqual({ ok: true, value: { port: 3 } });
    expect(await q.execute('xen-event-inject', { port: 0 })).toEqual({ ok: false, error: { class: 'GenericError', desc: 'Invalid port 0' } });
    expect(seen).toEqual(['qmp_capabilities', 'xen-event-inject', 'xen-event-inject']);
    q.close();
  });

  it('a peer that dies on a command is QmpClosed, and stays closed', async () => {
    const path = await peer((cmd, sock) => {
      if (cmd.execute === 'qmp_capabilities') sock.write('{"return": {}}\n');
      else sock.destroy();
    });
    const q = await Qmp.open(path);
    await expect(q.execute('xen-event-inject', { port: 0 })).rejects.toBeInstanceOf(QmpClosed);
    await expect(q.execute('query-status')).rejects.toThrow(/closed/);
  });

  it('no answer in time, or nobody listening, is QmpClosed', async () => {
    const path = await peer((cmd, sock) => { if (cmd.execute === 'qmp_capabilities') sock.write('{"return": {}}\n'); });
    const q = await Qmp.open(path);
    await expect(q.execute('query-status', undefined, 50)).rejects.toThrow(/no QMP answer within 50 ms/);
    q.close();
    await expect(Qmp.open(join(dir, 'nothing.sock'))).rejects.toThrow(/cannot connect to QMP/);
  });
});
