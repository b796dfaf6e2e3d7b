/*
 * Many `gatehouse user` commands at once (real processes, as operators and scripts run them): every command that
 * said it succeeded is in the file afterwards, none is lost, a deleted user never comes back, and a reader polling
 * the file meanwhile never sees a half-written one.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import bcrypt from 'bcrypt';
import { UserStore } from '../../src/identity/users.js';
import { runCli, type CliResult } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-userrace-'));
const cfg = path.join(tmp, 'gatehouse.yaml');
fs.writeFileSync(cfg, 'state_dir: var\nusers_file: users.yaml\nauth: { bcrypt_cost: 10 }\n');
const usersFile = path.join(tmp, 'users.yaml');
const stateDir = path.join(tmp, 'var');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const gh = (args: string[], input?: string): Promise<CliResult> => runCli(['--config', cfg, ...args], { timeoutMs: 150_000, ...(input !== undefined && { input }) });
const PW = 'a-long-passphrase';

beforeAll(async () => {
  const store = new UserStore(usersFile, 10);
  for (const n of ['par1', 'par2', 'par3', 'par4', 'par5', 'mallory', 'eve']) await store.add(n, PW, []);
  fs.mkdirSync(stateDir, { recursive: true });
  const until = Date.now() + 3_600_000;
  fs.writeFileSync(
    path.join(stateDir, 'lockouts.json'),
    JSON.stringify([
      { kind: 'user', key: 'par1', until, failures: 5 },
      { kind: 'user', key: 'par2', until, failures: 5 },
      { kind: 'ip', key: '127.0.0.20', until, failures: 5 },
      { kind: 'user', key: 'keep', until, failures: 5 },
    ]),
  );
});

/** Re-read the users file as the daemon's reload does, as often as possible, until `stop` resolves. */
async function pollReader(stop: Promise<unknown>): Promise<{ reads: number; errors: string[] }> {
  let done = false;
  void stop.finally(() => (done = true));
  const errors: string[] = [];
  let reads = 0;
  while (!done) {
    try {
      UserStore.load(usersFile, 10);
      reads++;
    } catch (err) {
      errors.push(String(err));
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  return { reads, errors };
}

describe('gatehouse user: concurrent writers', () => {
  it('20 mixed commands at once: every success is reflected, none lost, mallory stays deleted', async () => {
    const jobs: Array<{ args: string[]; input?: string }> = [
      ...Array.from({ length: 8 }, (_, i) => ({ args: ['user', 'add', `new${i}`, '--groups', `g${i}`, '--password-stdin'], input: `${PW}-${i}` })),
      { args: ['user', 'del', 'mallory'] },
      { args: ['user', 'passwd', 'par3', '--password-stdin'], input: 'par3-new-passphrase' },
      { args: ['user', 'passwd', 'par1', '--password-stdin'], input: 'par1-new-passphrase' },
      { args: ['user', 'del', 'eve'] },
      { args: ['user', 'groups', 'par4', '--add', 'ga'] },
      { args: ['user', 'groups', 'par4', '--add', 'gb'] },
      { args: ['user', 'groups', 'par4', '--add', 'gc'] },
      { args: ['user', 'groups', 'par5', '--set', 'staff'] },
      { args: ['user', 'unlock', 'par1'] },
      { args: ['user', 'unlock', 'par2'] },
      { args: ['user', 'unlock', '::ffff:127.0.0.20'] },
      { args: ['user', 'add', 'par2', '--password-stdin'], input: PW }, // already exists: must say so, exit 1
    ];
    expect(jobs).toHaveLength(20);
    const all = Promise.all(jobs.map((j) => gh(j.args, j.input)));
    const [results, reader] = await Promise.all([all, pollReader(all)]);

    results.forEach((r, i) => {
      const expected = i === 19 ? 1 : 0;
      expect({ job: jobs[i]!.args.join(' '), code: r.code, stderr: r.stderr }).toEqual({ job: jobs[i]!.args.join(' '), code: expected, stderr: expected ? expect.stringMatching(/already exists/) : '' });
    });
    expect(reader.errors).toEqual([]);
    expect(reader.reads).toBeGreaterThan(0);

    const store = UserStore.load(usersFile, 10);
    const names = store.list().map((u) => u.name);
    expect(names.sort()).toEqual(['new0', 'new1', 'new2', 'new3', 'new4', 'new5', 'new6', 'new7', 'par1', 'par2', 'par3', 'par4', 'par5']);
    for (let i = 0; i < 8; i++) {
      expect(store.get(`new${i}`)!.groups).toEqual([`g${i}`]);
      expect(await bcrypt.compare(`${PW}-${i}`, store.get(`new${i}`)!.hash)).toBe(true);
    }
    expect(await bcrypt.compare('par3-new-passphrase', store.get('par3')!.hash)).toBe(true);
    expect(await bcrypt.compare('par1-new-passphrase', store.get('par1')!.hash)).toBe(true);
    expect(await bcrypt.compare(PW, store.get('par2')!.hash)).toBe(true);
    expect([...store.get('par4')!.groups].sort()).toEqual(['ga', 'gb', 'gc']);
    expect(store.get('par5')!.groups).toEqual(['staff']);
    // No lock, break or temporary file is left behind.
    expect(fs.readdirSync(tmp).filter((f) => f !== 'var' && f !== 'gatehouse.yaml' && f !== 'users.yaml')).toEqual([]);
  }, 240_000);

  it('`user del mallory` racing `user passwd par3` never leaves mallory (3 rounds)', async () => {
    for (let round = 0; round < 3; round++) {
      expect((await gh(['user', 'add', 'mallory', '--password-stdin'], PW)).code).toBe(0);
      const [del, passwd] = await Promise.all([gh(['user', 'del', 'mallory']), gh(['user', 'passwd', 'par3', '--password-stdin'], `par3-round-${round}-pass`)]);
      expect([del.code, passwd.code, del.stderr, passwd.stderr]).toEqual([0, 0, '', '']);
      const store = UserStore.load(usersFile, 10);
      expect(store.has('mallory')).toBe(false);
      expect(await bcrypt.compare(`par3-round-${round}-pass`, store.get('par3')!.hash)).toBe(true);
    }
  }, 240_000);

  it('`user unlock` before the state folder exists does not fail with ENOENT', async () => {
    const cfg2 = path.join(tmp, 'fresh.yaml');
    fs.writeFileSync(cfg2, 'state_dir: never-started\nusers_file: users.yaml\nauth: { bcrypt_cost: 10 }\n');
    try {
      const r = await runCli(['--config', cfg2, 'user', 'unlock', 'alice']);
      expect([r.code, r.stderr]).toEqual([0, '']);
      expect(r.stdout).toMatch(/alice/);
    } finally {
      fs.rmSync(cfg2, { force: true });
    }
  }, 120_000);
});
