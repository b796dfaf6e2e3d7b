import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { createMailQueue } from '../../src/smtp/queue.js';
import { newQueueId, Spool } from '../../src/smtp/spool.js';
import { envelope, makeRuntime, message, startSink, waitFor } from './queue-fixture.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const ROOT = path.resolve(import.meta.dirname, '..', '..');

describe('restart and crash recovery', () => {
  it('a new queue on the same spool delivers what the old one left, once', async () => {
    const sink = await startSink();
    cleanups.push(() => sink.close());
    const smtp = { relay: { smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } }, queue: { retry_s: [1] } };
    const fx = await makeRuntime(smtp);
    cleanups.push(() => fx.cleanup());
    const q1 = createMailQueue(fx.rt, { tickMs: 100 });
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await q1.enqueue(envelope('a@example.org', [`r${i}@example.net`]), message(`restart${i}`)));
    await q1.stop(0); // never started: everything is still queued
    // an entry where one recipient was already delivered before the "crash"
    const spool = new Spool(fx.rt.config.paths.spoolDir);
    const partial = await q1.enqueue(envelope('a@example.org', ['done@example.net', 'todo@example.net']), message('partial'));
    const e = spool.readSync(partial)!;
    e.recipients[0]!.state = 'delivered';
    await spool.writeEnvelope(e);

    const q2 = createMailQueue(fx.rt, { tickMs: 100 });
    cleanups.push(() => q2.stop(1000));
    expect(q2.stats().depth).toBe(6);
    q2.start();
    await waitFor(() => spool.idsSync().length === 0);
    const subjects = sink.messages.map((m) => /Subject: (\S+)/.exec(m.data.toString())![1]).sort();
    expect(subjects).toEqual(['partial', 'restart0', 'restart1', 'restart2', 'restart3', 'restart4']);
    expect(sink.messages.find((m) => m.data.includes('Subject: partial'))!.to).toEqual(['todo@example.net']);
    void ids;
  });

  it('kill -9 after acknowledgement: every acknowledged message is delivered exactly once after restart', async () => {
    const sink = await startSink();
    cleanups.push(() => sink.close());
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-queue-crash-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const smtp = { relay: { smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } }, queue: { retry_s: [1] } };
    const child = path.join(dir, 'child.mts');
    fs.writeFileSync(
      child,
      `import { createMailQueue } from ${JSON.stringify(path.join(ROOT, 'src/smtp/queue.ts'))};
import { envelope, makeRuntime, message } from ${JSON.stringify(path.join(ROOT, 'test/smtp/queue-fixture.ts'))};
const fx = await makeRuntime(${JSON.stringify(smtp)}, [], ${JSON.stringify(dir)});
const q = createMailQueue(fx.rt);
for (let i = 0; ; i++) {
  await q.enqueue(envelope('a@example.org', ['r@example.net']), message('crash' + i, 'x'.repeat(20000) + '\\r\\n'));
  process.stdout.write('ACK crash' + i + '\\n');
}
`,
    );
    // node itself with tsx as a loader (the tsx binary would fork a second process that SIGKILL would miss)
    const proc = spawn(process.execPath, ['--import', pathToFileURL(path.join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href, child], { stdio: ['ignore', 'pipe', 'pipe'] });
    cleanups.push(() => {
      if (proc.exitCode === null) proc.kill('SIGKILL');
    });
    let out = '';
    let closed = false;
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
    proc.on('close', () => (closed = true)); // after the pipes are drained: every ACK the child wrote is in `out`
    await waitFor(() => (out.match(/^ACK /gm) ?? []).length >= 15, 20_000);
    proc.kill('SIGKILL');
    await waitFor(() => closed);
    expect(proc.signalCode).toBe('SIGKILL');
    const acked = [...out.matchAll(/^ACK (\S+)$/gm)].map((m) => m[1]!);

    const fx = await makeRuntime(smtp, [], dir);
    const q = createMailQueue(fx.rt, { tickMs: 100 });
    cleanups.push(() => q.stop(1000));
    const spool = new Spool(fx.rt.config.paths.spoolDir);
    expect(fs.readdirSync(spool.tmpDir)).toEqual([]);
    q.start();
    await waitFor(() => spool.idsSync().length === 0, 20_000);
    const subjects = sink.messages.map((m) => /Subject: (\S+)/.exec(m.data.toString())![1]!);
    expect(new Set(subjects).size).toBe(subjects.length); // no duplicates
    for (const a of acked) expect(subjects).toContain(a);
    // nothing half-written: whatever arrived is a whole message
    for (const m of sink.messages) {
      const subject = /Subject: (\S+)/.exec(m.data.toString())![1]!;
      expect(m.data.equals(message(subject, 'x'.repeat(20000) + '\r\n'))).toBe(true);
    }
    expect(subjects.length - acked.length).toBeLessThanOrEqual(1);
  });

  it('an entry deleted from the spool while queued is dropped, not resurrected', async () => {
    const sink = await startSink();
    cleanups.push(() => sink.close());
    sink.rcptReply = () => 451;
    const fx = await makeRuntime({ relay: { smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } }, queue: { retry_s: [1] } });
    cleanups.push(() => fx.cleanup());
    const q = createMailQueue(fx.rt, { tickMs: 100 });
    cleanups.push(() => q.stop(1000));
    q.start();
    const id = await q.enqueue(envelope('a@example.org', ['b@example.net']), message('deleted'));
    await waitFor(() => (q.spool.readSync(id)?.attempts ?? 0) >= 1);
    expect(await q.spool.remove(id)).toBe(true);
    await waitFor(() => q.stats().depth === 0, 5000);
    expect(q.spool.readSync(id)).toBeNull();
    expect(fs.existsSync(q.spool.msgPath(id))).toBe(false);
    expect(newQueueId()).not.toBe(id);
  });
});
