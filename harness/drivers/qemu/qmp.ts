// A QMP client over QEMU's unix socket (node's own net module): one command at a
// time, each answered by a `return` or an `error`; asynchronous events in between
// are skipped. QMP speaks one JSON object per line (docs/interop/qmp-spec.rst):
// a greeting, then `qmp_capabilities` leaves negotiation mode.
import { connect, type Socket } from 'node:net';

export interface QmpError {
  class: string;
  desc: string;
}

/** A command's answer: its `return` value, or the error QEMU gave. */
export type QmpAnswer = { ok: true; value: unknown } | { ok: false; error: QmpError };

/** Why a QMP exchange could not complete (QEMU gone, socket closed, no answer in time). */
export class QmpClosed extends Error {}

export class Qmp {
  private buffered = '';
  private waiting: ((line: string | Error) => void) | undefined;
  private lines: Array<string | Error> = [];

  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      this.buffered += chunk;
      let nl: number;
      while ((nl = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, nl).trim();
        this.buffered = this.buffered.slice(nl + 1);
        if (line) this.push(line);
      }
    });
    const end = (why: string) => () => this.push(new QmpClosed(why));
    sock.on('close', end('QMP socket closed'));
    sock.on('error', (e) => this.push(new QmpClosed(`QMP socket: ${e.message}`)));
  }

  private push(x: string | Error): void {
    const w = this.waiting;
    if (w) {
      this.waiting = undefined;
      w(x);
    } else this.lines.push(x);
  }

  private next(timeoutMs: number): Promise<string> {
    const first = this.lines.shift();
    if (first !== undefined) {
      if (first instanceof Error) this.lines.unshift(first); // a closed socket stays closed
      return first instanceof Error ? Promise.reject(first) : Promise.resolve(first);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        reject(new QmpClosed(`no QMP answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting = (x) => {
        clearTimeout(timer);
        if (x instanceof Error) {
          this.lines.unshift(x);
          reject(x);
        } else resolve(x);
      };
    });
  }

  /** The next `return` or `error` (events are skipped). */
  private async answer(timeoutMs: number): Promise<QmpAnswer> {
    for (;;) {
      const msg = JSON.parse(await this.next(timeoutMs)) as { return?: unknown; error?: QmpError; event?: string };
      if ('return' in msg) return { ok: true, value: msg.return };
      if (msg.error) return { ok: false, error: msg.error };
    }
  }

  /** Connects, reads the greeting and leaves capabilities negotiation. */
  static async open(path: string, timeoutMs = 10_000): Promise<Qmp> {
    const sock = connect(path);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', (e) => reject(new QmpClosed(`cannot connect to QMP at ${path}: ${e.message}`)));
    });
    const q = new Qmp(sock);
    const greeting = JSON.parse(await q.next(timeoutMs)) as { QMP?: unknown };
    if (!greeting.QMP) throw new QmpClosed(`QMP at ${path} did not greet (${JSON.stringify(greeting).slice(0, 80)})`);
    const caps = await q.execute('qmp_capabilities', undefined, timeoutMs);
    if (!caps.ok) throw new QmpClosed(`qmp_capabilities: ${caps.error.desc}`);
    return q;
  }

  async execute(command: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<QmpAnswer> {
    this.sock.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
    return this.answer(timeoutMs);
  }

  close(): void {
    this.sock.destroy();
  }
}
