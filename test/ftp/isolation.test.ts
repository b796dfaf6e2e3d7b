// `gatehouse ftp isolation MODE [--dry-run]` with data in homes, against a running server and a real slapd:
// the dry run moves nothing; a conflict refuses everything; the switch moves each home with one rename,
// checked file by file (content and mode) before and after; the running server keeps serving through the
// SIGHUP reload; the way back restores every file; a switch to shared that would expose files is refused.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { runCli } from '../helpers/cli.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { destroySlapd, SERVICE_DN, SERVICE_PW, startSlapd, SUFFIX, type Slapd } from '../helpers/slapd.js';
import { basicLogin } from './ftp-helpers.js';
import { switchPending } from '../../src/ftp/isolation.js';

const PW = { alice: 'alice-directory-pw', bob: 'bob-directory-pw', lou: 'local-user-password-1' } as const;
type Who = keyof typeof PW;

let slapd: Slapd;
let t: TestGatehouse;
let work: string;
let roots: string;
let homes: string;
const onHup = () => void t.gh.reload();

/** Every file under a folder: relative path → content (base64) and mode; folders with their mode. */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      const mode = (fs.lstatSync(p).mode & 0o777).toString(8);
      if (e.isDirectory()) {
        out[`${path.relative(root, p)}/`] = mode;
        walk(p);
      } else out[path.relative(root, p)] = `${mode}:${fs.readFileSync(p).toString('base64')}`;
    }
  };
  walk(root);
  return out;
}

async function upload(who: Who, files: Record<string, string>): Promise<void> {
  const c = await basicLogin(t.port('ftp'), who, PW[who]);
  try {
    for (const [name, body] of Object.entries(files)) {
      if (name.includes('/')) await c.ensureDir(path.dirname(name)).then(() => c.cd('/'));
      await c.uploadFrom(Readable.from([Buffer.from(body)]), name);
    }
  } finally {
    c.close();
  }
}

async function listing(who: Who): Promise<string[]> {
  const c = await basicLogin(t.port('ftp'), who, PW[who]);
  try {
    return (await c.list()).map((f) => f.name).sort();
  } finally {
    c.close();
  }
}

const cli = (...args: string[]) => runCli(['--config', t.configFile, 'ftp', 'isolation', ...args], { timeoutMs: 30_000 });

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-iso-'));
  roots = path.join(work, 'users');
  fs.mkdirSync(roots);
  slapd = await startSlapd([
    { uid: 'alice', password: PW.alice, ftpRoot: roots, ftpDir: 'alice' },
    { uid: 'bob', password: PW.bob, ftpRoot: roots, ftpDir: 'staff\\bob' },
  ]);
  const pwFile = path.join(work, 'bind.pw');
  fs.writeFileSync(pwFile, `${SERVICE_PW}\n`, { mode: 0o600 });
  t = await startGatehouse(
    {
      identity: { sources: ['local', 'directory'] },
      directory: { url: slapd.ldapsUrl, ca_file: slapd.caFile, bind_dn: SERVICE_DN, bind_password_file: pwFile, user_base: `ou=people,${SUFFIX}` },
      ftp: { isolation: 'isolated', allowed_roots: [roots] },
    },
    [{ name: 'lou', password: PW.lou }],
  );
  homes = path.join(t.dir, 'var/ftp/home');
  process.on('SIGHUP', onHup);
  await upload('alice', { 'a.txt': 'alice one\n', 'deep/b.txt': 'alice two\n' });
  await upload('bob', { 'bob.txt': 'bob\n' });
  await upload('lou', { 'lou.txt': 'lou\n' });
}, 60_000);

afterAll(async () => {
  process.off('SIGHUP', onHup);
  await t?.stop();
  await destroySlapd(slapd);
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe('ftp isolation switch', () => {
  let before: Record<Who, Record<string, string>>;

  it('--dry-run prints what would move where and who could reach it, and moves nothing', async () => {
    before = { alice: snapshot(path.join(homes, 'alice')), bob: snapshot(path.join(homes, 'bob')), lou: snapshot(path.join(homes, 'lou')) };
    expect(Object.keys(before.alice).sort()).toEqual(['a.txt', 'deep/', 'deep/b.txt']);
    const r = await cli('directory', '--dry-run');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`move alice: ${path.join(homes, 'alice')} → ${path.join(roots, 'alice')} (2 files)`);
    expect(r.stdout).toContain(`move bob: ${path.join(homes, 'bob')} → ${path.join(roots, 'staff/bob')} (1 file)`);
    expect(r.stdout).toMatch(/stays: lou: already at/);
    expect(r.stdout).toMatch(/newly reachable by others: nothing/);
    expect(snapshot(path.join(homes, 'alice'))).toEqual(before.alice);
    expect(fs.readdirSync(roots)).toEqual([]);
  });

  it('a target that already holds files refuses the whole switch: nothing moves', async () => {
    fs.mkdirSync(path.join(roots, 'staff', 'bob'), { recursive: true });
    fs.writeFileSync(path.join(roots, 'staff', 'bob', 'stray.txt'), 'someone else\n');
    const r = await cli('directory');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/REFUSED: bob: .*already holds files/);
    expect(r.stdout).toContain('nothing was moved');
    expect(snapshot(path.join(homes, 'alice'))).toEqual(before.alice);
    expect(snapshot(path.join(homes, 'bob'))).toEqual(before.bob);
    expect(fs.existsSync(path.join(roots, 'alice'))).toBe(false);
    fs.rmSync(path.join(roots, 'staff'), { recursive: true });
  });

  it('the switch moves every home intact, records it, rewrites the config, and the running server serves the new homes', async () => {
    const r = await cli('directory');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/moved 2 homes; ftp.isolation: directory written/);
    expect(snapshot(path.join(roots, 'alice'))).toEqual(before.alice);
    expect(snapshot(path.join(roots, 'staff/bob'))).toEqual(before.bob);
    expect(snapshot(path.join(homes, 'lou'))).toEqual(before.lou);
    expect(fs.existsSync(path.join(homes, 'alice'))).toBe(false);
    // folders made on the way are owner-only: nothing became readable by anyone else
    expect(fs.statSync(path.join(roots, 'staff')).mode & 0o077).toBe(0);
    expect(fs.statSync(path.join(roots, 'alice')).mode & 0o077).toBe(0);
    expect((parse(fs.readFileSync(t.configFile, 'utf8')) as { ftp: { isolation: string } }).ftp.isolation).toBe('directory');
    const journal = JSON.parse(fs.readFileSync(path.join(t.dir, 'var/ftp/isolation.json'), 'utf8')) as { state: string; to: string };
    expect(journal).toMatchObject({ state: 'done', to: 'directory' });
    // the SIGHUP reached this process's server: wait (bounded) until it runs the new mode
    const deadline = Date.now() + 10_000;
    while (t.gh.config.ftp.isolation !== 'directory' && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    expect(t.gh.config.ftp.isolation).toBe('directory');
    expect(await listing('alice')).toEqual(['a.txt', 'deep']);
    expect(await listing('bob')).toEqual(['bob.txt']);
    expect(await listing('lou')).toEqual(['lou.txt']);
  });

  it('while a switch is recorded but the server has not reloaded into it, FTP logins wait (421)', () => {
    const cfg = t.gh.config;
    expect(switchPending(cfg)).toBe(false);
    expect(switchPending({ ...cfg, ftp: { ...cfg.ftp, isolation: 'isolated' } })).toBe(true);
  });

  it('check warns when the config no longer says the mode the homes were moved for', async () => {
    const text = fs.readFileSync(t.configFile, 'utf8');
    const edited = path.join(path.dirname(t.configFile), 'edited.yaml');
    fs.writeFileSync(edited, text.replace('isolation: directory', 'isolation: isolated'));
    const r = await runCli(['--config', edited, 'check']);
    expect(r.stdout).toMatch(/ftp.isolation: isolated .*the homes were last moved for directory/);
    fs.rmSync(edited);
  });

  it('and back to isolated: every file where it was, byte for byte and mode for mode', async () => {
    const r = await cli('isolated');
    expect(r.code).toBe(0);
    expect(snapshot(path.join(homes, 'alice'))).toEqual(before.alice);
    expect(snapshot(path.join(homes, 'bob'))).toEqual(before.bob);
    expect(snapshot(path.join(homes, 'lou'))).toEqual(before.lou);
    expect(fs.existsSync(path.join(roots, 'alice'))).toBe(false);
    const deadline = Date.now() + 10_000;
    while (t.gh.config.ftp.isolation !== 'isolated' && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    expect(await listing('alice')).toEqual(['a.txt', 'deep']);
  });

  it('shared with rights that let others list or read: refused, with who would reach whose files', async () => {
    const r = await cli('shared', '--dry-run');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/newly reachable: alice's 2 file\(s\) would become list-able by authenticated/);
    const apply = await cli('shared');
    expect(apply.code).toBe(1);
    expect(snapshot(path.join(homes, 'alice'))).toEqual(before.alice);
  });
});
