/*
 * The first delivery attempt uses the bytes enqueue just wrote (no read-back): what arrives is still exactly
 * what is on disk, no state file is written for a message delivered at the first attempt, an entry deleted
 * from the spool before its first attempt (`gatehouse queue delete`) is not delivered from memory, and a
 * message that needs a retry is read back from the spool with its recorded state.
 */
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { createMailQueue, type MailQueueImpl } from '../../src/smtp/queue.js';
import { Spool } from '../../src/smtp/spool.js';
import { envelope, makeRuntime, message, startSink, waitFor, type Sink } from './queue-fixture.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(retry = [1]): Promise<{ sink: Sink; q: MailQueueImpl; spoolDir: string }> {
  const sink = await startSink({});
  cleanups.push(() => sink.close());
  const fx = await makeRuntime({ relay: { smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none' } }, queue: { retry_s: retry } });
  cleanups.push(() => fx.cleanup());
  const q = createMailQueue(fx.rt, { tickMs: 100 });
  cleanups.push(() => q.stop(1000));
  return { sink, q, spoolDir: fx.rt.config.paths.spoolDir };
}

describe('first attempt from memory', () => {
  it('delivers the bytes that are on disk and never writes a state file for it', async () => {
    const { sink, q } = await setup();
    const seen: string[] = [];
    const watcher = fs.watch(q.spool.envDir, (_e, name) => name && seen.push(name));
    cleanups.push(() => watcher.close());
    q.start();
    const data = message('fresh', '.dot\r\nline\r\n');
    const id = await q.enqueue(envelope('a@example.org', ['b@example.net']), data);
    expect(q.spool.readDataSync(id)!.equals(data)).toBe(true);
    await waitFor(() => sink.messages.length === 1);
    expect(sink.messages[0]!.data.equals(data)).toBe(true);
    await waitFor(() => q.stats().depth === 0 && q.spool.idsSync().length === 0);
    expect(seen).toEqual([]);
    expect(fs.readdirSync(q.spool.envDir)).toEqual([]);
  });

  it('a handed-over message too large for the fresh cache is moved to the spool (no copy) and delivered from disk', async () => {
    const { sink, q } = await setup();
    q.start();
    const line = `${'x'.repeat(76)}\r\n`;
    const data = message('big', line.repeat(Math.ceil((33 * 1024 * 1024) / line.length)));
    const expected = Buffer.from(data);
    const id = await q.enqueue(envelope('a@example.org', ['b@example.net']), data, undefined, { handOver: true });
    expect(data.length).toBe(0); // moved to the writer thread, not copied
    expect(q.spool.readDataSync(id)!.equals(expected)).toBe(true);
    await waitFor(() => sink.messages.length === 1, 30_000);
    expect(sink.messages[0]!.data.equals(expected)).toBe(true);
    // a small one handed over is kept in memory for its first attempt, as before
    const small = message('small');
    await q.enqueue(envelope('a@example.org', ['b@example.net']), small, undefined, { handOver: true });
    expect(small.length).toBeGreaterThan(0);
    await waitFor(() => sink.messages.length === 2);
  });

  it('does not deliver an entry deleted from the spool before its first attempt', async () => {
    const { sink, q, spoolDir } = await setup();
    const id = await q.enqueue(envelope('a@example.org', ['b@example.net']), message('deleted'));
    const cli = new Spool(spoolDir); // as `gatehouse queue delete` does, from another process
    expect(await cli.remove(id)).toBe(true);
    await cli.close();
    q.start();
    await waitFor(() => q.stats().depth === 0);
    await new Promise((r) => setTimeout(r, 300));
    expect(sink.messages).toEqual([]);
  });

  it('reads a deferred message back with its state for the retry', async () => {
    const { sink, q } = await setup([1]);
    let refusals = 1;
    sink.rcptReply = () => (refusals-- > 0 ? 451 : null);
    q.start();
    const data = message('retry');
    const id = await q.enqueue(envelope('a@example.org', ['b@example.net']), data);
    const deferred = await waitFor(() => {
      const e = q.spool.readSync(id);
      return e && e.attempts === 1 ? e : null;
    });
    expect(deferred.recipients[0]!.state).toBe('pending');
    await waitFor(() => sink.messages.length === 1);
    expect(sink.messages[0]!.data.equals(data)).toBe(true);
    await waitFor(() => q.spool.idsSync().length === 0 && fs.readdirSync(q.spool.envDir).length === 0);
  });
});
