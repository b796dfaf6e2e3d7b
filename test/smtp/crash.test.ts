/*
 * Crash safety of the whole process, as operators run it: `node --import tsx src/cli/main.ts start` in a
 * child process, killed with SIGKILL. A message that got 250 is delivered exactly once after a restart
 * (byte for byte, to a real SMTP sink that was down at first); a message killed in the middle of DATA is
 * never delivered. Every wait is bounded; every child and server is stopped in afterAll.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChildGatehouses, writeConfigDir, type ConfigDir } from '../helpers/process.js';
import { freePort, openData, RawSmtp, type Sink, spoolEntries, startSink, waitUntil } from './listener-client.js';

describe('smtp crash safety (kill -9)', () => {
  let cfg: ConfigDir;
  let stateDir: string;
  let smtpPort: number;
  let sinkPort: number;
  let sink: Sink | null = null;
  const procs = new ChildGatehouses();

  beforeAll(async () => {
    smtpPort = await freePort();
    sinkPort = await freePort();
    cfg = await writeConfigDir('gatehouse-crash-', {
      hostname: 'gatehouse.test',
      auth: { bcrypt_cost: 10 },
      log: { stdout: false, level: 'info' },
      smtp: {
        listen: `127.0.0.1:${smtpPort}`,
        relay: { smarthost: { host: '127.0.0.1', port: sinkPort, tls: 'none' } },
        queue: { retry_s: [1] },
      },
      ftp: { enabled: false },
      nntp: { enabled: false },
    });
    stateDir = cfg.stateDir;
  });

  afterAll(async () => {
    procs.killAll();
    await sink?.close();
    fs.rmSync(cfg.dir, { recursive: true, force: true });
  });

  const startGatehouseProcess = async () => (await procs.start(cfg.configFile)).child;
  const kill9 = (child: ChildProcess) => procs.kill9(child);

  const body = (tag: string) => Buffer.from(`From: app@example.org\r\nTo: bob@example.net\r\nSubject: crash ${tag}\r\n\r\n${`line of ${tag}\r\n`.repeat(50)}.dot line\r\nend\r\n`);
  const stuffed = (b: Buffer) => Buffer.from(b.toString('latin1').replace(/^\./gm, '..'), 'latin1');

  it('delivers an acknowledged message exactly once after kill -9 and restart', async () => {
    const first = await startGatehouseProcess();
    const message = body('acked');
    const c = await RawSmtp.connect(smtpPort);
    try {
      await openData(c, 'app@example.org', 'bob@example.net');
      c.write(stuffed(message));
      const r = await c.cmd('.', 10_000);
      expect(r.code).toBe(250);
    } finally {
      c.close();
    }
    await kill9(first);
    expect(spoolEntries(stateDir).length).toBeGreaterThan(0);

    sink = await startSink({ port: sinkPort });
    const second = await startGatehouseProcess();
    const got = await sink.waitFor(1, 20_000);
    expect(got.length).toBe(1);
    // wait through more retry rounds: still exactly one copy
    await new Promise((r) => setTimeout(r, 2500));
    expect(sink.messages.length).toBe(1);
    const m = sink.messages[0]!;
    expect(m.from).toBe('app@example.org');
    expect(m.to).toEqual(['bob@example.net']);
    expect(m.data.toString('latin1').startsWith('Received: from client.test ([127.0.0.1])')).toBe(true);
    expect(m.data.subarray(m.data.length - message.length).equals(message)).toBe(true);
    expect(await waitUntil(() => spoolEntries(stateDir).length === 0, 5000)).toBe(true);
    await kill9(second);
  }, 90_000);

  it('never delivers a message whose DATA was cut by kill -9 before the final dot', async () => {
    expect(sink).not.toBeNull();
    const before = sink!.messages.length;
    const first = await startGatehouseProcess();
    const c = await RawSmtp.connect(smtpPort);
    try {
      await openData(c, 'app@example.org', 'bob@example.net');
      c.write(stuffed(body('cut')));
      await new Promise((r) => setTimeout(r, 300));
      await kill9(first);
    } finally {
      c.close();
    }
    const second = await startGatehouseProcess();
    // sink is up and retry is 1 s: anything queued would arrive well within this window
    await new Promise((r) => setTimeout(r, 3000));
    expect(sink!.messages.length).toBe(before);
    expect(sink!.messages.some((m) => m.data.includes(Buffer.from('crash cut')))).toBe(false);
    expect(spoolEntries(stateDir)).toEqual([]);
    await kill9(second);
  }, 90_000);

  // a message over 1 MiB is written to the spool as it arrives (src/smtp/spool-draft.ts)
  const large = (tag: string) => Buffer.from(`From: app@example.org\r\nTo: bob@example.net\r\nSubject: crash ${tag}\r\n\r\n${`${'x'.repeat(70)} ${tag}\r\n`.repeat(60_000)}.dot line\r\nend\r\n`);

  it('delivers an acknowledged large (streamed) message exactly once after kill -9 and restart', async () => {
    expect(sink).not.toBeNull();
    const before = sink!.messages.length;
    const first = await startGatehouseProcess();
    const message = large('big-acked');
    const c = await RawSmtp.connect(smtpPort);
    try {
      await openData(c, 'app@example.org', 'bob@example.net');
      // the sink refuses delivery while we kill: the entry must come from the spool after the restart
      sink!.rcptReply = () => 451;
      c.write(stuffed(message));
      const r = await c.cmd('.', 20_000);
      expect(r.code).toBe(250);
    } finally {
      c.close();
    }
    await kill9(first);
    sink!.rcptReply = () => null;
    const second = await startGatehouseProcess();
    const got = await sink!.waitFor(before + 1, 30_000);
    expect(got.length).toBe(before + 1);
    await new Promise((r) => setTimeout(r, 2500));
    expect(sink!.messages.length).toBe(before + 1);
    const m = sink!.messages[before]!;
    expect(m.data.subarray(m.data.length - message.length).equals(message)).toBe(true);
    expect(await waitUntil(() => spoolEntries(stateDir).length === 0, 5000)).toBe(true);
    await kill9(second);
  }, 90_000);

  it('never delivers a large message whose DATA was cut by kill -9 while it was being written to the spool', async () => {
    expect(sink).not.toBeNull();
    const before = sink!.messages.length;
    const first = await startGatehouseProcess();
    const tmp = `${stateDir}/spool/tmp`;
    const c = await RawSmtp.connect(smtpPort);
    try {
      await openData(c, 'app@example.org', 'bob@example.net');
      c.write(stuffed(large('big-cut')));
      // the draft exists in tmp/: kill in the middle of it
      expect(await waitUntil(() => fs.existsSync(tmp) && fs.readdirSync(tmp).length > 0, 10_000)).toBe(true);
      await kill9(first);
    } finally {
      c.close();
    }
    const second = await startGatehouseProcess();
    await new Promise((r) => setTimeout(r, 3000));
    expect(sink!.messages.length).toBe(before);
    expect(sink!.messages.some((m) => m.data.includes(Buffer.from('big-cut')))).toBe(false);
    expect(spoolEntries(stateDir)).toEqual([]);
    expect(fs.readdirSync(tmp)).toEqual([]); // start-up removed the draft
    await kill9(second);
  }, 90_000);
});
