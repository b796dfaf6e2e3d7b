import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import bcrypt from 'bcrypt';
import { parse } from 'yaml';
import { runCli } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-user-'));
const cfg = path.join(tmp, 'gatehouse.yaml');
fs.writeFileSync(cfg, 'state_dir: var\nusers_file: users.yaml\nauth: { bcrypt_cost: 10 }\n');
const usersFile = path.join(tmp, 'users.yaml');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const gh = (args: string[], input?: string) => runCli(['--config', cfg, ...args], input === undefined ? {} : { input });

describe('gatehouse user', () => {
  it('adds a user from stdin with a bcrypt hash, mode 0600', async () => {
    const r = await gh(['user', 'add', 'alice', '--groups', 'staff,students', '--password-stdin'], 'a-long-passphrase\n');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(fs.statSync(usersFile).mode & 0o777).toBe(0o600);
    const data = parse(fs.readFileSync(usersFile, 'utf8')) as { users: Record<string, { hash: string; groups: string[] }> };
    expect(data.users.alice!.groups).toEqual(['staff', 'students']);
    expect(await bcrypt.compare('a-long-passphrase', data.users.alice!.hash)).toBe(true);
    expect(fs.readFileSync(usersFile, 'utf8')).not.toContain('a-long-passphrase');
  });

  it('list never prints hashes', async () => {
    const r = await gh(['user', 'list']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^alice\tgroups: staff,students/m);
    expect(r.stdout).not.toMatch(/\$2[aby]\$/);
  });

  it.each([
    ['short password', ['user', 'add', 'bob', '--password-stdin'], 'short', /at least 12 characters/],
    ['password over 72 bytes', ['user', 'add', 'bob', '--password-stdin'], 'é'.repeat(37), /at most 72 bytes/],
    ['NUL in password', ['user', 'add', 'bob', '--password-stdin'], 'abcdefghijkl\0mnop', /NUL/],
    ['unsafe name (traversal)', ['user', 'add', '../etc', '--password-stdin'], 'a-long-passphrase', /folder names/],
    ['unsafe name (upper case)', ['user', 'add', 'Bob', '--password-stdin'], 'a-long-passphrase', /folder names/],
    ['reserved name', ['user', 'add', 'anonymous', '--password-stdin'], 'a-long-passphrase', /reserved/],
    ['password on the command line is not offered', ['user', 'add', 'bob'], '', /--password-stdin/],
  ])('refuses %s (exit 2)', async (_n, args, input, message) => {
    const r = await gh(args, input);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    const text = fs.readFileSync(usersFile, 'utf8');
    expect(text).not.toMatch(/^ {2}bob:/m);
  });

  it('refuses a duplicate (exit 1)', async () => {
    const r = await gh(['user', 'add', 'alice', '--password-stdin'], 'another-long-passphrase');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/already exists/);
  });

  it('passwd changes the hash; del removes the user', async () => {
    const before = fs.readFileSync(usersFile, 'utf8');
    expect((await gh(['user', 'passwd', 'alice', '--password-stdin'], 'a-new-long-passphrase')).code).toBe(0);
    const data = parse(fs.readFileSync(usersFile, 'utf8')) as { users: Record<string, { hash: string }> };
    expect(fs.readFileSync(usersFile, 'utf8')).not.toBe(before);
    expect(await bcrypt.compare('a-new-long-passphrase', data.users.alice!.hash)).toBe(true);
    expect((await gh(['user', 'passwd', 'nobody', '--password-stdin'], 'a-new-long-passphrase')).code).toBe(1);
    expect((await gh(['user', 'del', 'alice'])).code).toBe(0);
    expect((await gh(['user', 'list'])).stdout).toMatch(/no users/);
  });

  it('unlock (= throttle clear) lifts a lock recorded on disk, including one from before throttling', async () => {
    const stateDir = path.join(tmp, 'var');
    fs.mkdirSync(stateDir, { recursive: true });
    const until = Date.now() + 600_000;
    fs.writeFileSync(path.join(stateDir, 'lockouts.json'), JSON.stringify([{ kind: 'user', key: 'carol', until, failures: 5 }, { kind: 'ip', key: '127.0.0.20', until, failures: 5 }]));
    const listed = (await gh(['throttle', 'list'])).stdout;
    expect(listed).toMatch(/address 127\.0\.0\.20\t5 failures\tuntil /);
    expect(listed).toMatch(/name carol from unfamiliar addresses/);
    const r = await gh(['user', 'unlock', 'carol']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/name carol: 1 throttle\(s\) cleared \(no running gatehouse; applied at its next start\)/);
    const r2 = await gh(['throttle', 'clear', '::ffff:127.0.0.20']);
    expect(r2.stdout).toMatch(/address 127\.0\.0\.20: 1 throttle\(s\) cleared/);
    expect((await gh(['throttle', 'list'])).stdout).toMatch(/^nothing is throttled/);
    expect((await gh(['throttle', 'clear', 'carol'])).stdout).toMatch(/was not throttled/);
    expect((await gh(['throttle', 'frobnicate'])).code).toBe(2);
  }, 120_000);
});
