/*
 * The CLI's promise about errors: every misuse exits 2 with the command's usage, every other refusal is one clear
 * line with exit 1 or 2, and nothing ends in "unexpected error" (exit 70) or a stack trace. Part one runs the
 * error table of the README as written; part two a corpus of bad inputs.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, runCli } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-errors-'));
const cfg = path.join(tmp, 'gatehouse.yaml');
fs.writeFileSync(cfg, 'state_dir: var\nusers_file: users.yaml\nauth: { bcrypt_cost: 10 }\n');
fs.writeFileSync(path.join(tmp, 'state-is-a-file.yaml'), 'state_dir: afile\nusers_file: users.yaml\n');
fs.writeFileSync(path.join(tmp, 'afile'), '');
fs.writeFileSync(path.join(tmp, 'users-is-a-folder.yaml'), 'users_file: .\n');
fs.writeFileSync(path.join(tmp, 'bad-users.yaml'), 'users_file: broken-users.yaml\n');
fs.writeFileSync(path.join(tmp, 'broken-users.yaml'), 'users: [1, 2\n');
fs.writeFileSync(path.join(tmp, 'typo.yaml'), 'anonymus: true\n');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Run as an operator would: in the config's folder, the config from $GATEHOUSE_CONFIG unless --config is given. */
const run = (args: string[], input = '') => runCli(args, { cwd: tmp, input, env: { GATEHOUSE_CONFIG: cfg }, timeoutMs: 60_000 });

function expectClear(r: { code: number | null; stderr: string }, code: number): void {
  expect(r.stderr).toMatch(/^gatehouse[ :]/);
  expect(r.stderr).not.toMatch(/unexpected error/i);
  expect(r.stderr).not.toMatch(/^\s+at /m); // no stack trace
  expect(r.code).toBe(code);
}

describe('every CLI error the README documents exits with its documented code', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('<!-- cli-errors:begin -->'), readme.indexOf('<!-- cli-errors:end -->'));
  const rows = [...table.matchAll(/^\| `gatehouse([^`]*)`( \(empty input\))? \| (\d+) \| `([^`]+)` \|$/gm)].map((m) => ({
    args: m[1]!.trim().split(/\s+/).filter(Boolean),
    code: Number(m[3]),
    starts: m[4]!,
  }));

  it('the README has the table', () => {
    expect(rows.length).toBeGreaterThanOrEqual(15);
    expect(readme).toMatch(/### Exit codes and errors/);
    for (const code of [0, 1, 2, 70, 75]) expect(readme).toMatch(new RegExp(`^\\| ${code} \\| `, 'm'));
  });

  it.concurrent.each(rows.map((r) => [`gatehouse ${r.args.join(' ')}`, r] as const))('%s', async (_label, row) => {
    const r = await run(row.args);
    expectClear(r, row.code);
    expect(r.stderr.startsWith(row.starts), r.stderr).toBe(true);
    if (row.code === 2 && /needs|Unknown option|Unexpected argument|unknown|no command/.test(row.starts)) expect(r.stderr).toMatch(/\nusage: gatehouse/);
  }, 120_000);
});

// [arguments, exit code, is it a misuse (usage must follow)?, standard input]
const CORPUS: Array<[string[], number, boolean, string?]> = [
  [['--config'], 2, true],
  [['--config='], 2, true],
  [['-c'], 2, true],
  [['--config', cfg], 2, true],
  [['--bogus'], 2, true],
  [['--config', '/nonexistent/x.yaml', 'check'], 2, false],
  [['--config', '/etc', 'check'], 2, false],
  [['--config', 'typo.yaml', 'check'], 2, false],
  [['--config', 'typo.yaml', 'user', 'list'], 2, false],
  [['check', '--quiet=yes'], 2, true],
  [['check', '--config'], 2, true],
  [['start', '--nope'], 2, true],
  [['start', 'now'], 2, true],
  [['explain'], 2, true],
  [['explain', '--service', 'x', '--ip', '192.0.2.1'], 2, true],
  [['explain', '--service', 'smtp', '--ip', 'not-an-ip', '--action', 'connect'], 2, true],
  [['explain', '--service', 'smtp', '--ip', '', '--action', 'connect'], 2, true],
  [['explain', '--service', 'smtp', '--ip', '192.0.2.1', '--tls=yes'], 2, true],
  [['explain', '--service', 'smtp', '--ip', '192.0.2.1', '--ip'], 2, true],
  [['explain', '--service', 'smtp', '--ip', '192.0.2.1', '--action', 'connect', 'extra'], 2, true],
  [['explain', '--service', 'smtp', '--ip', '192.0.2.1', '--action', 'read', '--object', 'g'], 2, true],
  [['explain', '--service', 'nntp', '--ip', '192.0.2.1', '--action', 'relay', '--object', 'a@b.c'], 2, true],
  [['explain', '--service', 'ftp', '--ip', '192.0.2.1', '--stage', 'bogus'], 2, true],
  [['explain', '--service', 'ftp', '--ip', '192.0.2.1', '--stage', 'tls'], 2, true],
  [['explain', '--service', 'ftp', '--ip', '192.0.2.1', '--stage', 'action'], 2, true],
  [['explain', '--service', 'ftp', '--ip', '192.0.2.1', '--action', 'connect', '--stage', 'action'], 2, true],
  [['log', '--service', 'x'], 2, true],
  [['log', '--verdict', 'maybe'], 2, true],
  [['log', '--lines', '99999999'], 2, true],
  [['log', 'extra'], 2, true],
  [['log', '--bogus'], 2, true],
  [['queue'], 2, true],
  [['queue', 'bogus'], 2, true],
  [['queue', 'delete'], 2, true],
  [['queue', 'list', 'extra'], 2, true],
  [['queue', '--bogus', 'list'], 2, true],
  [['user'], 2, true],
  [['user', '--bogus'], 2, true],
  [['user', 'bogus'], 2, true],
  [['user', 'add', 'alice', '--password-stdin', '--bogus'], 2, true],
  [['user', 'add', 'alice', '--groups'], 2, true],
  [['user', 'add', 'alice', 'bob', '--password-stdin'], 2, true],
  [['user', 'add', 'alice', '--password-stdin', '--groups', 'Bad!'], 2, false, 'a-long-passphrase'],
  [['user', 'add', 'alice', '--password-stdin'], 2, false, 'x'.repeat(5000)],
  [['user', 'add', 'alice', '--password-stdin'], 2, false, 'é'.repeat(40)],
  [['user', 'del'], 2, true],
  [['user', 'del', 'a', 'b'], 2, true],
  [['user', 'del', 'alice', '--password-stdin'], 2, true],
  [['user', 'passwd'], 2, true],
  [['user', 'passwd', 'nobody', '--password-stdin'], 1, false, 'a-long-passphrase'],
  [['user', 'groups', 'alice'], 2, true],
  [['user', 'groups', 'nobody', '--add', 'staff'], 1, false],
  [['user', 'groups', 'alice', '--add', 'Not A Group'], 2, false],
  [['user', 'list', 'extra'], 2, true],
  [['user', 'unlock'], 2, true],
  [['user', 'unlock', 'a', 'b'], 2, true],
  [['audit', '--ftp-user'], 2, true],
  [['audit', '--ftp-user', 'BadName', '--password-stdin'], 2, true],
  [['audit', '--ftp-user', 'alice'], 2, true],
  [['audit', 'extra'], 2, true],
  [['--config', 'users-is-a-folder.yaml', 'user', 'list'], 2, false],
  [['--config', 'bad-users.yaml', 'user', 'list'], 2, false],
  [['--config', 'bad-users.yaml', 'user', 'add', 'bob', '--password-stdin'], 2, false, 'a-long-passphrase'],
  [['--config', 'state-is-a-file.yaml', 'user', 'unlock', 'carol'], 1, false],
];

describe('a corpus of bad inputs: exit 1 or 2 with a clear message, never "unexpected error"', () => {
  it.concurrent.each(CORPUS.map((c) => [c[0].join(' ') || '(nothing)', c] as const))('gatehouse %s', async (_label, [args, code, misuse, input]) => {
    const r = await run(args, input);
    expectClear(r, code);
    if (misuse) expect(r.stderr).toMatch(/(^|\n)usage: gatehouse/);
    expect(r.stderr.split('\n')[0]!.length).toBeLessThan(400);
  }, 120_000);

  it('help is not an error', async () => {
    for (const args of [['help'], ['--help'], ['user', '--help'], ['help', 'explain']]) {
      const r = await run(args);
      expect([r.code, r.stderr]).toEqual([0, '']);
      expect(r.stdout).toMatch(/usage: gatehouse/);
    }
  }, 240_000);
});
