/*
 * Crash safety of the whole process, as operators run it: `node --import tsx src/cli/main.ts start` in a
 * child process, killed with SIGKILL. A message that got 250 is delivered exactly once after a restart
 * (byte for byte, to a real SMTP sink that was down at first); a message killed in the middle of DATA is
 * never delivered. Every wait is bounded; every child and server is stopped in afterAll.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawSmtp, ehlo, freePort, spoolEntries, startSink, waitUntil, type Sink } from './listener-client.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');

describe('smtp crash safety (kill -9)', () => {
  let dir: string;
  let configFile: string;
  let stateDir: string;
  let smtpPort: number;
  let sinkPort: number;
  let sink: Sink | null = null;
  const children = new Set<ChildProcess>();

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-crash-'));
    fs.mkdirSync(path.join(dir, 'config'));
    configFile = path.join(dir, 'config', 'gatehouse.yaml');
    stateDir = path.join(dir, 'var');
    smtpPort = await freePort();
    sinkPort = await freePort();
    const config = {
      hostname: 'gatehouse.test',
      state_dir: '../var',
      auth: { bcrypt_cost: 10 },
      log: { stdout: false, level: 'info' },
      smtp: {
        listen: `127.0.0.1:${smtpPort}`,
        relay: { smarthost: { host: '127.0.0.1', port: sinkPort, tls: 'none' } },
        queue: { retry_s: [1] },
      },
      ftp: { enabled: false },
      nntp: { enabled: false },
    };
    fs.writeFileSync(configFile, stringify(config));
  });

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await sink?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function startGatehouseProcess(): Promise<ChildProcess> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--config', configFile, 'start', '--quiet'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(child);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', () => children.delete(child));
    const up = await waitUntil(() => child.exitCode !== null || stderr.includes('is up'), 30_000);
    if (!up || child.exitCode !== null) throw new Error(`gatehouse did not start: ${stderr}`);
    // the listener is bound once "is up" is printed; make sure it answers
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(smtpPort, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (!ok) throw new Error('gatehouse is up but the SMTP port does not answer');
    return child;
  }

  async function kill9(child: ChildProcess): Promise<void> {
    const gone = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
    });
    child.kill('SIGKILL');
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    expect(child.signalCode).toBe('SIGKILL');
  }

  const body = (tag: string) => Buffer.from(`From: app@example.org\r\nTo: bob@example.net\r\nSubject: crash ${tag}\r\n\r\n${`line of ${tag}\r\n`.repeat(50)}.dot line\r\nend\r\n`);
  const stuffed = (b: Buffer) => Buffer.from(b.toString('latin1').replace(/^\./gm, '..'), 'latin1');

  it('delivers an acknowledged message exactly once after kill -9 and restart', async () => {
    const first = await startGatehouseProcess();
    const message = body('acked');
    const c = await RawSmtp.connect(smtpPort);
    try {
      await c.read();
      await ehlo(c);
      expect((await c.cmd('MAIL FROM:<app@example.org>')).code).toBe(250);
      expect((await c.cmd('RCPT TO:<bob@example.net>')).code).toBe(250);
      expect((await c.cmd('DATA')).code).toBe(354);
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
      await c.read();
      await ehlo(c);
      expect((await c.cmd('MAIL FROM:<app@example.org>')).code).toBe(250);
      expect((await c.cmd('RCPT TO:<bob@example.net>')).code).toBe(250);
      expect((await c.cmd('DATA')).code).toBe(354);
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
});
