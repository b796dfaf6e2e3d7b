/*
 * kill -9 during mixed load. SMTP sessions send messages (to a smarthost that is down, so every acknowledged
 * message must be in the queue), FTP clients upload files (basic-ftp, STOR), NNTP clients post articles; the
 * gatehouse child process is killed with SIGKILL at a seeded random moment, restarted on the same ports, and
 * everything that got 250 / 226 / 240 so far is checked: mail in spool/msg exactly once (by an X-Chaos tag),
 * uploads on disk with the right bytes, articles in the store exactly once by Message-ID (asked over NNTP).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { Client } from 'basic-ftp';
import { rng } from './fuzzer.js';
import { LineConn, PASSWORD, freePort, makeSetup, sleep, startProc, type Proc, type Setup } from './proc.js';

export const CHAOS_GROUP = 'load.chaos';

export async function chaosSetup(): Promise<Setup> {
  const closed = await freePort();
  return makeSetup({
    smtp: { relay: { smarthost: { host: '127.0.0.1', port: closed, tls: 'none' } }, limits: { connections_per_ip: 50 } },
    ftp: { tls_required: false, limits: { connections_per_ip: 50 } },
    nntp: { auth_requires_tls: false, groups: [{ name: CHAOS_GROUP, read: ['authenticated'], post: ['authenticated'] }], limits: { connections_per_ip: 50, posts_per_minute: 100_000 } },
  });
}

export interface ChaosFigures {
  readonly rounds: number;
  readonly mail: { acked: number; lost: number; duplicated: number };
  readonly uploads: { acked: number; lost: number; wrongBytes: number };
  readonly articles: { acked: number; lost: number; duplicated: number };
  readonly killAfterMs: number[];
}

interface Acked {
  mail: Set<string>;
  uploads: Map<string, string>;
  articles: Set<string>;
}

const BODY = `${'The quick brown fox jumps over the lazy dog.\r\n'.repeat(60)}`;

async function smtpWorker(port: number, w: number, stop: () => boolean, acked: Acked): Promise<void> {
  let n = 0;
  while (!stop()) {
    const c = await LineConn.connect(port).catch(() => null);
    if (!c) return;
    try {
      if (!(await c.reply())?.startsWith('220')) return;
      if (!(await c.cmd('EHLO chaos.test'))?.startsWith('250')) return;
      while (!stop()) {
        const tag = `m${w}-${n++}-${crypto.randomBytes(4).toString('hex')}`;
        if (!(await c.cmd('MAIL FROM:<app@example.org>'))?.startsWith('250')) return;
        if (!(await c.cmd('RCPT TO:<bob@example.net>'))?.startsWith('250')) return;
        if (!(await c.cmd('DATA'))?.startsWith('354')) return;
        c.write(`From: app@example.org\r\nTo: bob@example.net\r\nSubject: chaos\r\nX-Chaos: ${tag}\r\n\r\n${BODY}.\r\n`);
        const r = await c.reply(15_000);
        if (!r?.startsWith('250')) return;
        acked.mail.add(tag);
      }
    } finally {
      c.close();
    }
  }
}

async function ftpWorker(port: number, w: number, stop: () => boolean, acked: Acked): Promise<void> {
  let n = 0;
  while (!stop()) {
    const client = new Client(15_000);
    try {
      await client.access({ host: '127.0.0.1', port, user: 'alice', password: PASSWORD, secure: false });
      while (!stop()) {
        const name = `up-${w}-${n++}-${crypto.randomBytes(4).toString('hex')}.bin`;
        const bytes = crypto.randomBytes(16_384 + Math.floor(Math.random() * 65_536));
        const r = await client.uploadFrom(Readable.from([bytes]), name);
        if (r.code !== 226) return;
        acked.uploads.set(name, crypto.createHash('sha256').update(bytes).digest('hex'));
      }
    } catch {
      return;
    } finally {
      client.close();
    }
  }
}

async function nntpLogin(port: number): Promise<LineConn | null> {
  const c = await LineConn.connect(port).catch(() => null);
  if (!c) return null;
  if (!(await c.reply())?.match(/^20[01]/)) return (c.close(), null);
  await c.cmd('AUTHINFO USER alice');
  if (!(await c.cmd(`AUTHINFO PASS ${PASSWORD}`, 15_000))?.startsWith('281')) return (c.close(), null);
  return c;
}

async function nntpWorker(port: number, w: number, stop: () => boolean, acked: Acked): Promise<void> {
  let n = 0;
  while (!stop()) {
    const c = await nntpLogin(port);
    if (!c) return;
    try {
      while (!stop()) {
        const id = `<chaos-${w}-${n++}-${crypto.randomBytes(4).toString('hex')}@bench.test>`;
        if (!(await c.cmd('POST'))?.startsWith('340')) return;
        c.write(`From: app@example.org\r\nNewsgroups: ${CHAOS_GROUP}\r\nSubject: chaos\r\nMessage-ID: ${id}\r\n\r\n${BODY}.\r\n`);
        const r = await c.reply(15_000);
        if (!r?.startsWith('240')) return;
        acked.articles.add(id);
      }
    } finally {
      c.close();
    }
  }
}

/** Count X-Chaos tags in the queue. */
function spoolTags(setup: Setup): Map<string, number> {
  const dir = path.join(setup.config.paths.spoolDir, 'msg');
  const out = new Map<string, number>();
  for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    const text = fs.readFileSync(path.join(dir, f), 'latin1');
    for (const m of text.matchAll(/^X-Chaos: (\S+)\r?$/gm)) out.set(m[1]!, (out.get(m[1]!) ?? 0) + 1);
  }
  return out;
}

async function articleIds(port: number): Promise<Map<string, number>> {
  const c = await nntpLogin(port);
  if (!c) throw new Error('nntp: cannot log in to verify');
  try {
    const g = await c.cmd(`GROUP ${CHAOS_GROUP}`);
    const out = new Map<string, number>();
    if (!g?.startsWith('211') || g.startsWith('211 0 ')) return out;
    if (!(await c.cmd('HDR Message-ID 1-'))?.startsWith('225')) throw new Error('nntp: HDR refused');
    const lines = await c.block(30_000);
    if (!lines) throw new Error('nntp: HDR timed out');
    for (const l of lines) {
      const id = l.split(' ')[1] ?? '';
      out.set(id, (out.get(id) ?? 0) + 1);
    }
    return out;
  } finally {
    c.close();
  }
}

async function verify(setup: Setup, acked: Acked): Promise<Omit<ChaosFigures, 'rounds' | 'killAfterMs'>> {
  const tags = spoolTags(setup);
  const mailLost = [...acked.mail].filter((t) => !tags.has(t)).length;
  const mailDup = [...tags.values()].filter((n) => n > 1).length;
  const home = path.join(setup.config.paths.ftpHomes, 'alice');
  let upLost = 0;
  let upWrong = 0;
  for (const [name, sha] of acked.uploads) {
    const file = path.join(home, name);
    if (!fs.existsSync(file)) upLost++;
    else if (crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex') !== sha) upWrong++;
  }
  const ids = await articleIds(setup.ports.nntp);
  const artLost = [...acked.articles].filter((id) => !ids.has(id)).length;
  const artDup = [...ids.values()].filter((n) => n > 1).length;
  return {
    mail: { acked: acked.mail.size, lost: mailLost, duplicated: mailDup },
    uploads: { acked: acked.uploads.size, lost: upLost, wrongBytes: upWrong },
    articles: { acked: acked.articles.size, lost: artLost, duplicated: artDup },
  };
}

export interface ChaosOptions {
  readonly rounds: number;
  readonly seed: number;
  /** kill after a random time in [minMs, maxMs) of load */
  readonly minMs?: number;
  readonly maxMs?: number;
  readonly workers?: { smtp: number; ftp: number; nntp: number };
  readonly onRound?: (round: number, figures: Omit<ChaosFigures, 'rounds' | 'killAfterMs'>) => void;
}

/** Run `rounds` kill -9 rounds on `setup` (a chaosSetup()); returns the final check after the last restart. */
export async function runChaos(setup: Setup, o: ChaosOptions): Promise<ChaosFigures & { proc: Proc }> {
  const r = rng(o.seed);
  const acked: Acked = { mail: new Set(), uploads: new Map(), articles: new Set() };
  const workers = o.workers ?? { smtp: 3, ftp: 2, nntp: 2 };
  const killAfter: number[] = [];
  let proc = await startProc(setup);
  let last: Omit<ChaosFigures, 'rounds' | 'killAfterMs'> | null = null;
  for (let round = 1; round <= o.rounds; round++) {
    let stopped = false;
    const stop = () => stopped;
    const jobs = [
      ...Array.from({ length: workers.smtp }, (_, w) => smtpWorker(setup.ports.smtp, w, stop, acked)),
      ...Array.from({ length: workers.ftp }, (_, w) => ftpWorker(setup.ports.ftp, w, stop, acked)),
      ...Array.from({ length: workers.nntp }, (_, w) => nntpWorker(setup.ports.nntp, w, stop, acked)),
    ];
    const min = o.minMs ?? 1500;
    const ms = Math.round(min + r() * ((o.maxMs ?? 4000) - min));
    killAfter.push(ms);
    await sleep(ms);
    await proc.kill9();
    stopped = true;
    await Promise.race([Promise.allSettled(jobs), sleep(30_000)]);
    proc = await startProc(setup);
    last = await verify(setup, acked);
    o.onRound?.(round, last);
  }
  return { rounds: o.rounds, killAfterMs: killAfter, ...last!, proc };
}
