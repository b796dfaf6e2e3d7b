/*
 * `gatehouse log`: the real CLI over a decision log written by the real RotatingFile (small cap, so it
 * rotates): all generations oldest first, filters, --json, --lines, bounded lines, escaped control
 * characters, and --follow across a rotation until SIGTERM.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LineSplitter, formatRecord, parseRecord } from '../../src/cli/log.js';
import { RotatingFile } from '../../src/net/log.js';
import type { DecisionRecord } from '../../src/policy/audit.js';
import { CLI, ROOT, TSX, runCli } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-log-'));
const cfg = path.join(tmp, 'gatehouse.yaml');
fs.writeFileSync(cfg, 'state_dir: var\nlog: { stdout: false }\n');
const logDir = path.join(tmp, 'var/log');
const logFile = path.join(logDir, 'decisions.log');
fs.mkdirSync(logDir, { recursive: true });

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

let seq = 0;
function rec(over: Partial<DecisionRecord> = {}): DecisionRecord {
  seq++;
  return {
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(),
    service: 'smtp',
    phase: 'rcpt',
    verdict: 'deny',
    rule: 'relay.default',
    reason: 'relay access denied',
    ip: '127.0.0.20',
    user: '-',
    session: `s${seq}`,
    object: `n${seq}@example.net`,
    ...over,
  };
}

describe('log line handling', () => {
  it('skips over-long lines whole and keeps the next line intact', () => {
    const s = new LineSplitter(10);
    expect(s.push(Buffer.from('short\n0123456789ABC'))).toEqual(['short']);
    expect(s.push(Buffer.from('DEF\nok'))).toEqual([]);
    expect(s.push(Buffer.from('\n'))).toEqual(['ok']);
    expect(s.skipped).toBe(1);
  });

  it('escapes terminal control characters and refuses records that are not decisions', () => {
    const line = formatRecord(rec({ user: 'evil\u001b[2J\u202e', reason: 'multi\nline' }));
    expect(line).not.toMatch(/[\u0000-\u001f\u202e]/);
    expect(line).toContain('evil\\u001b[2J\\u202e');
    expect(line).toContain('multi\\u000aline');
    expect(parseRecord('{"time":1}')).toBeNull();
    expect(parseRecord('not json')).toBeNull();
    expect(parseRecord(JSON.stringify(rec()))).not.toBeNull();
  });

  it('shows the PROXY protocol peer beside the client address (issue 17)', () => {
    expect(formatRecord(rec({ ip: '127.0.0.20', proxy: '10.0.0.5' }))).toContain(' 127.0.0.20 via 10.0.0.5 ');
    expect(formatRecord(rec({ ip: '127.0.0.20' }))).not.toContain(' via ');
    expect(parseRecord(JSON.stringify({ ...rec(), proxy: 5 }))).toBeNull();
  });
});

describe('gatehouse log', () => {
  const records: DecisionRecord[] = [];
  it('prints every generation oldest first, one readable line per decision, with filters', async () => {
    const rf = new RotatingFile(logFile, 700, 3);
    for (let i = 0; i < 6; i++) {
      const r = i % 3 === 0 ? rec({ service: 'ftp', phase: 'connect', verdict: 'allow', rule: 'access.allow', object: undefined }) : rec();
      records.push(r);
      rf.write(`${JSON.stringify(r)}\n`);
    }
    rf.write(`${'x'.repeat(70 * 1024)}\n`); // over MAX_LINE: skipped, counted
    rf.write('garbage\n');
    rf.close();
    expect(fs.existsSync(`${logFile}.1`)).toBe(true);

    const all = await runCli(['--config', cfg, 'log']);
    expect(all.code).toBe(0);
    const lines = all.stdout.trim().split('\n');
    expect(lines).toHaveLength(6);
    records.forEach((r, i) => {
      expect(lines[i]).toContain(r.time.replace('T', ' ').replace('Z', ''));
      expect(lines[i]).toContain(r.rule);
      expect(lines[i]).toContain(r.ip);
    });
    expect(lines[1]).toMatch(/smtp +rcpt +DENY +relay\.default +127\.0\.0\.20 +- +relay access denied \[n\d+@example\.net\]/);
    expect(all.stderr).toMatch(/skipped 1 line\(s\) longer than 65536 bytes/);

    const deny = await runCli(['--config', cfg, 'log', '--verdict', 'deny']);
    expect(deny.stdout.trim().split('\n')).toHaveLength(4);
    expect(deny.stdout).not.toContain('allow');
    const ftp = await runCli(['--config', cfg, 'log', '--service', 'ftp', '--json']);
    const parsed = ftp.stdout.trim().split('\n').map((l) => JSON.parse(l) as DecisionRecord);
    expect(parsed).toEqual(records.filter((r) => r.service === 'ftp'));
    const lastOne = await runCli(['--config', cfg, 'log', '--lines', '1', '--json']);
    expect(JSON.parse(lastOne.stdout) as DecisionRecord).toEqual(records.at(-1));
  }, 90_000);

  it('refuses bad options with exit 2', async () => {
    const r = await runCli(['--config', cfg, 'log', '--verdict', 'maybe']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--verdict: expected allow or deny/);
  });

  it('--follow prints the last lines, then new decisions across a rotation, until SIGTERM', async () => {
    const child = spawn(process.execPath, ['--import', TSX, CLI, '--config', cfg, 'log', '--follow', '--lines', '2', '--json'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    const kill = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const waitFor = async (pred: () => boolean, what: string) => {
      for (let i = 0; i < 200 && !pred(); i++) await new Promise((r) => setTimeout(r, 50));
      if (!pred()) throw new Error(`timed out waiting for ${what}: ${out}`);
    };
    try {
      const sessions = () => out.trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as DecisionRecord).session);
      await waitFor(() => sessions().length >= 2, 'the last two lines');
      expect(sessions()).toEqual(records.slice(-2).map((r) => r.session));
      const rf = new RotatingFile(logFile, 700, 3);
      const fresh = [rec({ session: 'live-1' }), rec({ session: 'live-2' }), rec({ session: 'live-3' }), rec({ session: 'live-4' })];
      for (const r of fresh) {
        rf.write(`${JSON.stringify(r)}\n`);
        await new Promise((res) => setTimeout(res, 250));
      }
      rf.close();
      expect(fs.readFileSync(`${logFile}.1`, 'utf8')).toContain('live-1'); // it did rotate while we followed
      expect(fs.readFileSync(logFile, 'utf8')).toContain('live-4');
      await waitFor(() => sessions().includes('live-4'), 'the lines written after rotation');
      expect(sessions().slice(2)).toEqual(['live-1', 'live-2', 'live-3', 'live-4']);
      child.kill('SIGTERM');
      expect(await closed).toBe(0);
    } finally {
      clearTimeout(kill);
      child.kill('SIGKILL');
    }
  }, 40_000);
});
