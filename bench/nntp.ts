/*
 * NNTP benchmark (`npm run bench:nntp`): starts `gatehouse start` as a child process on loopback with a
 * temporary state folder, then measures (a) POST of 2 KiB articles with 1 and 4 clients, (b) ARTICLE by
 * message-id and by number (lock-step and pipelined 16 deep), (c) OVER of 1,000 rows, (d) connect + STARTTLS
 * + AUTHINFO latency. Prints figures; asserts nothing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { parseConfig } from '../src/config/load.js';
import { UserStore } from '../src/identity/users.js';
import { RawClient, secureLogin } from '../test/nntp/client.js';

const PASSWORD = 'bench-password-long-enough';
const BCRYPT_COST = 12;
const root = path.resolve(import.meta.dirname, '..');

async function startServer(dir: string): Promise<{ child: ChildProcess; port: number }> {
  const configDir = path.join(dir, 'config');
  fs.mkdirSync(configDir, { recursive: true });
  const configFile = path.join(configDir, 'gatehouse.yaml');
  const data = {
    hostname: 'gatehouse.test',
    state_dir: '../var',
    auth: { bcrypt_cost: BCRYPT_COST },
    log: { stdout: false, level: 'warn' },
    smtp: { enabled: false },
    ftp: { enabled: false },
    nntp: {
      listen: '127.0.0.1:0',
      groups: [{ name: 'bench.test', read: ['authenticated'], post: ['authenticated'] }],
      limits: { posts_per_minute: 1_000_000, connections_per_ip: 50 },
    },
  };
  fs.writeFileSync(configFile, stringify(data));
  const config = parseConfig(data, configFile, configDir);
  await new UserStore(config.paths.usersFile, BCRYPT_COST).add('bench', PASSWORD, []);
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--config', configFile, 'start', '--quiet'], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`no banner: ${err}`)), 30_000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      err += d;
      const m = /NNTP 127\.0\.0\.1:(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]) });
      }
    });
    child.once('exit', (code) => reject(new Error(`server exited ${code}: ${err}`)));
  });
}

const body = Array.from({ length: 26 }, (_, i) => `${String(i).padStart(2, '0')} ${'lorem ipsum dolor sit amet '.repeat(3).slice(0, 72)}`);
const article = (subject: string) => ['From: Bench <bench@gatehouse.test>', 'Newsgroups: bench.test', `Subject: ${subject}`, '', ...body];

async function postMany(port: number, clients: number, perClient: number): Promise<number> {
  const cs = await Promise.all(Array.from({ length: clients }, () => secureLogin(port, 'bench', PASSWORD)));
  const t0 = performance.now();
  await Promise.all(
    cs.map(async (c, i) => {
      for (let n = 0; n < perClient; n++) {
        const [, r] = await c.post(article(`c${i} n${n}`));
        if (!r?.startsWith('240')) throw new Error(`POST: ${r}`);
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  for (const c of cs) c.close();
  return (clients * perClient) / s;
}

async function fetches(c: RawClient, ids: string[], depth: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < ids.length; i += depth) {
    const batch = ids.slice(i, i + depth);
    c.write(batch.map((id) => `ARTICLE ${id}\r\n`).join(''));
    for (const _ of batch) {
      const l = await c.line();
      if (!l?.startsWith('220')) throw new Error(`ARTICLE: ${l}`);
      await c.block();
    }
  }
  return ids.length / ((performance.now() - t0) / 1000);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-nntp-'));
  const { child, port } = await startServer(dir);
  try {
    const one = await postMany(port, 1, 400);
    const four = await postMany(port, 4, 150);
    const c = await secureLogin(port, 'bench', PASSWORD);
    const g = (await c.cmd('GROUP bench.test')).split(' ');
    const low = Number(g[2]);
    const high = Number(g[3]);
    await c.cmd(`HDR Message-ID ${low}-${high}`);
    const ids = (await c.block()).map((l) => l.split(' ')[1]!);
    const sample = ids.slice(0, 400);
    const nums = Array.from({ length: 400 }, (_, i) => String(low + i));
    const byIdLock = await fetches(c, sample, 1);
    const byNumLock = await fetches(c, nums, 1);
    const byIdPipe = await fetches(c, sample, 16);
    const byNumPipe = await fetches(c, nums, 16);
    const overMs: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      const r = await c.cmd(`OVER ${low}-${low + 999}`);
      const rows = await c.block();
      if (!r.startsWith('224') || rows.length !== 1000) throw new Error(`OVER: ${r} ${rows.length}`);
      overMs.push(performance.now() - t0);
    }
    c.close();
    const loginMs: number[] = [];
    for (let i = 0; i < 15; i++) {
      const t0 = performance.now();
      const l = await secureLogin(port, 'bench', PASSWORD);
      loginMs.push(performance.now() - t0);
      l.close();
    }
    const tlsMs: number[] = [];
    for (let i = 0; i < 15; i++) {
      const t0 = performance.now();
      const l = await RawClient.connect(port);
      await l.line();
      await l.cmd('STARTTLS');
      await l.upgrade();
      tlsMs.push(performance.now() - t0);
      l.close();
    }
    const f = (n: number) => n.toFixed(n < 100 ? 1 : 0);
    const lines = [
      `NNTP benchmark (gatehouse start as a child; 127.0.0.1; 2 KiB articles; bcrypt cost ${BCRYPT_COST})`,
      `  POST, 1 client                     ${f(one)} articles/s`,
      `  POST, 4 clients                    ${f(four)} articles/s`,
      `  ARTICLE by message-id, lock-step   ${f(byIdLock)} /s   pipelined 16 deep ${f(byIdPipe)} /s`,
      `  ARTICLE by number, lock-step       ${f(byNumLock)} /s   pipelined 16 deep ${f(byNumPipe)} /s`,
      `  OVER of 1,000 rows                 ${median(overMs).toFixed(1)} ms (median of 20)`,
      `  connect + STARTTLS + AUTHINFO      ${median(loginMs).toFixed(1)} ms (median of 15; bcrypt cost ${BCRYPT_COST} included)`,
      `  connect + STARTTLS only            ${median(tlsMs).toFixed(1)} ms (median of 15)`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    if (child.exitCode === null) child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
