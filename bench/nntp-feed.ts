/*
 * The feed rows of `npm run bench:nntp -- feed` (or NNTP_BENCH_ONLY=feed): one peer connection sends the same set
 * of ~2 KiB articles (unique Message-IDs, a Path from the peer, a group both servers carry) to Gatehouse (a listed
 * peer, durable store) and to INN's innd (127.0.0.1 is `peer ME` in Debian's incoming.conf), the two taking turns
 * for several rounds. Rows:
 *   stream   MODE STREAM, then TAKETHIS pipelined with FEED_WINDOW (default 128) in flight, as innfeed does;
 *            articles/s from the first command to the last reply, counting 239s
 *   check    CHECK, and TAKETHIS as each 238 comes back, same window
 *   ihave    lock-step IHAVE (335, article, 235): one article per round trip, so per-article latency
 * After each block every article is looked up on the server (STAT <message-id>, pipelined, on a reader
 * connection: Gatehouse's own port, INN's nnrpd) and the group's high-water mark must have moved by the block's
 * size, so a fast refusal cannot count as speed: any article not acknowledged or not found fails the run.
 * Server CPU per article (all threads, from /proc) for both sides. Options (environment): NNTP_FEED_ARTICLES
 * (per block, default 5000), NNTP_FEED_ROUNDS (default 3), FEED_WINDOW, NNTP_FEED_ROWS (comma list, default
 * stream,check,ihave), NNTP_FEED_IHAVE (articles per IHAVE block, default 1000), FEED_REFILL (`read`, the default:
 * the window is topped up after each read of replies, as innfeed sends whenever there is room; `half`: refilled in
 * one write once half of it is answered), NNTP_FEED_SETTLE (default 1: `sync` and a quiet second before each
 * timed block; 0: none).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { secureLogin } from '../test/nntp/client.js';

export interface FeedTarget {
  readonly name: string;
  /** the server process, for its CPU time */
  readonly pid: number | undefined;
  /** where the feed goes (Gatehouse's NNTP port, innd) */
  readonly feedPort: number;
  /** where the articles are looked up afterwards (Gatehouse's NNTP port, INN's nnrpd), STARTTLS + AUTHINFO */
  readonly readPort: number;
  readonly user: string;
  readonly password: string;
  readonly group: string;
}

const ARTICLES = Math.max(1, Number(process.env.NNTP_FEED_ARTICLES ?? '5000') || 5000);
const ROUNDS = Math.max(1, Number(process.env.NNTP_FEED_ROUNDS ?? '3') || 3);
const WINDOW = Math.max(1, Number(process.env.FEED_WINDOW ?? '128') || 128);
/** NNTP_FEED_WARMUP: articles streamed untimed to each server first (default 1000) */
const WARMUP = Math.max(1, Number(process.env.NNTP_FEED_WARMUP ?? '1000') || 1000);
const IHAVE_N = Math.max(1, Number(process.env.NNTP_FEED_IHAVE ?? '1000') || 1000);
/** FEED_REFILL=half: the window is refilled when half of it is answered (one big write), not after each read of replies */
const HALF = process.env.FEED_REFILL === 'half';
const ROWS = (process.env.NNTP_FEED_ROWS ?? 'stream,check,ihave').split(',').map((s) => s.trim());
const RUN = `${Date.now().toString(36)}${process.pid.toString(36)}`;

/** One raw connection: writes are corked per burst; replies are handed line by line to the current handler. */
class FeedConn {
  private buf: Buffer = Buffer.alloc(0);
  private onLine: ((l: string) => void) | null = null;
  private failed: ((e: Error) => void) | null = null;
  closed = false;

  private constructor(private readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on('data', (d: Buffer) => {
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
      let at: number;
      let from = 0;
      while ((at = this.buf.indexOf('\r\n', from)) >= 0) {
        const l = this.buf.toString('latin1', from, at);
        from = at + 2;
        this.onLine?.(l);
      }
      this.buf = from === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(from);
    });
    sock.on('close', () => {
      this.closed = true;
      this.failed?.(new Error('connection closed'));
    });
    sock.on('error', () => undefined);
  }

  static open(port: number): Promise<FeedConn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new FeedConn(s)));
      s.once('error', reject);
    });
  }

  /** Run `start`, feeding every reply line to `handle` until it returns true (bounded by timeoutMs). */
  until(start: () => void, handle: (l: string) => boolean, timeoutMs = 120_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('feed timed out')), timeoutMs);
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.onLine = null;
        this.failed = null;
        if (err) reject(err);
        else resolve();
      };
      this.failed = done;
      this.onLine = (l) => {
        try {
          if (handle(l)) done();
        } catch (err) {
          done(err as Error);
        }
      };
      start();
    });
  }

  async cmd(text: string): Promise<string> {
    let reply = '';
    await this.until(
      () => this.write(`${text}\r\n`),
      (l) => ((reply = l), true),
      30_000,
    );
    return reply;
  }

  async greeting(): Promise<string> {
    let reply = '';
    await this.until(() => undefined, (l) => ((reply = l), true), 30_000);
    return reply;
  }

  write(data: string | Buffer): void {
    this.sock.write(data);
  }

  close(): void {
    this.sock.destroy();
  }
}

const BODY = Array.from({ length: 26 }, (_, i) => `${String(i).padStart(2, '0')} ${'lorem ipsum dolor sit amet '.repeat(3).slice(0, 72)}\r\n`).join('');

interface Art {
  readonly id: string;
  /** the article, dot-terminated, CRLF */
  readonly wire: Buffer;
}

/** The articles of one block: the same ids and bytes go to every target. */
function articles(block: string, n: number, group: string): Art[] {
  const date = new Date().toUTCString().replace('GMT', '+0000');
  return Array.from({ length: n }, (_, i) => {
    const id = `<feed.${block}.${i}.${RUN}@peer.bench.test>`;
    const head = [
      'Path: peer.bench.test!not-for-mail',
      'From: Feed Bench <feed@peer.bench.test>',
      `Newsgroups: ${group}`,
      `Subject: feed bench ${block} ${i}`,
      `Message-ID: ${id}`,
      `Date: ${date}`,
      'Organization: Gatehouse feed bench',
    ].join('\r\n');
    return { id, wire: Buffer.from(`${head}\r\n\r\n${BODY}.\r\n`, 'latin1') };
  });
}

async function streamConn(port: number): Promise<FeedConn> {
  const c = await FeedConn.open(port);
  const g = await c.greeting();
  if (!g.startsWith('200') && !g.startsWith('201')) throw new Error(`greeting: ${g}`);
  const m = await c.cmd('MODE STREAM');
  if (!m.startsWith('203')) throw new Error(`MODE STREAM: ${m}`);
  return c;
}

interface Block {
  secs: number;
  /** server CPU µs (all threads) */
  cpu: number | null;
}

function cpuUs(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * (1e6 / 100);
  } catch {
    return null;
  }
}

async function timed(t: FeedTarget, run: () => Promise<void>): Promise<Block> {
  const c0 = cpuUs(t.pid);
  const t0 = performance.now();
  await run();
  const secs = (performance.now() - t0) / 1000;
  const c1 = cpuUs(t.pid);
  return { secs, cpu: c0 !== null && c1 !== null ? c1 - c0 : null };
}

/** TAKETHIS, WINDOW in flight; every reply must be 239 for its own id. */
async function takethis(c: FeedConn, arts: readonly Art[]): Promise<void> {
  const waiting = new Set<string>();
  let next = 0;
  let done = 0;
  const pump = () => {
    const out: Buffer[] = [];
    while (next < arts.length && waiting.size < WINDOW) {
      const a = arts[next++]!;
      waiting.add(a.id);
      out.push(Buffer.from(`TAKETHIS ${a.id}\r\n`, 'latin1'), a.wire);
    }
    if (out.length > 0) c.write(Buffer.concat(out));
  };
  // the window is topped up once per read of replies (one write), as innfeed sends whenever there is room
  let scheduled = false;
  const later = () => {
    scheduled = false;
    pump();
  };
  await c.until(pump, (l) => {
    const [code, id] = l.split(' ');
    if (code !== '239' || !id || !waiting.delete(id)) throw new Error(`TAKETHIS: ${l}`);
    done++;
    if (HALF ? waiting.size <= WINDOW / 2 : !scheduled) {
      scheduled = true;
      process.nextTick(later);
    }
    return done === arts.length;
  });
}

/** CHECK, then TAKETHIS on each 238; WINDOW ids in flight (checked or being taken). */
async function checkTake(c: FeedConn, arts: readonly Art[]): Promise<void> {
  const byId = new Map(arts.map((a) => [a.id, a]));
  let inFlight = 0;
  let next = 0;
  let done = 0;
  const pump = () => {
    let out = '';
    while (next < arts.length && inFlight < WINDOW) {
      out += `CHECK ${arts[next++]!.id}\r\n`;
      inFlight++;
    }
    if (out) c.write(out);
  };
  // the TAKETHIS for the 238s of one read leave in one write (as innfeed batches them), not one small write each
  let take: Buffer[] = [];
  const flush = () => {
    if (take.length > 0) c.write(Buffer.concat(take));
    take = [];
    pump();
  };
  await c.until(pump, (l) => {
    const [code, id] = l.split(' ');
    if (code === '238' && id && byId.has(id)) {
      if (take.length === 0) process.nextTick(flush);
      take.push(Buffer.from(`TAKETHIS ${id}\r\n`, 'latin1'), byId.get(id)!.wire);
      return false;
    }
    if (code !== '239' || !id || !byId.delete(id)) throw new Error(`CHECK/TAKETHIS: ${l}`);
    done++;
    inFlight--;
    if (take.length === 0 && (!HALF || inFlight <= WINDOW / 2)) process.nextTick(flush);
    return done === arts.length;
  });
}

/** Lock-step IHAVE. */
async function ihave(c: FeedConn, arts: readonly Art[]): Promise<void> {
  for (const a of arts) {
    const r = await c.cmd(`IHAVE ${a.id}`);
    if (!r.startsWith('335')) throw new Error(`IHAVE: ${r}`);
    let reply = '';
    await c.until(() => c.write(a.wire), (l) => ((reply = l), true), 30_000);
    if (!reply.startsWith('235')) throw new Error(`IHAVE article: ${reply}`);
  }
}

/** The group's high-water mark, and a STAT of every id (pipelined): each must be there. */
async function verify(t: FeedTarget, arts: readonly Art[] | null, highBefore: number | null): Promise<number> {
  const r = await secureLogin(t.readPort, t.user, t.password);
  try {
    const g = await r.cmd(`GROUP ${t.group}`);
    if (!g.startsWith('211')) throw new Error(`${t.name} GROUP: ${g}`);
    const high = Number(g.split(' ')[3]);
    if (arts && highBefore !== null) {
      if (high - highBefore !== arts.length) throw new Error(`${t.name}: high-water mark moved ${high - highBefore}, not ${arts.length}`);
      for (let i = 0; i < arts.length; i += 200) {
        const batch = arts.slice(i, i + 200);
        r.write(batch.map((a) => `STAT ${a.id}\r\n`).join(''));
        for (const a of batch) {
          const l = await r.line(30_000);
          if (!l?.startsWith('223')) throw new Error(`${t.name}: ${a.id} not stored: ${l}`);
        }
      }
    }
    return high;
  } finally {
    r.close();
  }
}

type Row = 'stream' | 'check' | 'ihave';

/** NNTP_FEED_SETTLE=0 skips the `sync` and quiet second before each timed block (default on, as bench:smtp does). */
const SETTLE = process.env.NNTP_FEED_SETTLE !== '0';

async function block(t: FeedTarget, row: Row, arts: readonly Art[]): Promise<Block> {
  const before = await verify(t, null, null);
  if (SETTLE) {
    // the previous block's dirty pages (innd writes without syncing) are written back now, not during this one
    execFileSync('sync');
    await new Promise((r) => setTimeout(r, 1000));
  }
  const c = await streamConn(t.feedPort);
  try {
    const b = await timed(t, () => (row === 'stream' ? takethis(c, arts) : row === 'check' ? checkTake(c, arts) : ihave(c, arts)));
    await verify(t, arts, before);
    return b;
  } finally {
    c.close();
  }
}

/** The feed rows for Gatehouse and INN, taking turns (each round starts with the other one). */
export async function runFeed(targets: readonly FeedTarget[]): Promise<string> {
  // warm-up: a short stream block each (JIT, INN's caches), not counted
  for (const t of targets) await block(t, 'stream', articles(`warm${t.name}`, WARMUP, t.group));
  const rows = ROWS.filter((r): r is Row => r === 'stream' || r === 'check' || r === 'ihave');
  const res = new Map<string, { rate: number[]; cpu: number[] }>();
  const key = (t: FeedTarget, row: Row) => `${t.name}/${row}`;
  for (let r = 0; r < ROUNDS; r++) {
    for (const row of rows) {
      const n = row === 'ihave' ? IHAVE_N : ARTICLES;
      const arts = articles(`r${r}${row}`, n, targets[0]!.group);
      for (let k = 0; k < targets.length; k++) {
        const t = targets[(r + k) % targets.length]!;
        const b = await block(t, row, arts);
        const e = res.get(key(t, row)) ?? { rate: [], cpu: [] };
        e.rate.push(n / b.secs);
        if (b.cpu !== null) e.cpu.push(b.cpu / n);
        res.set(key(t, row), e);
      }
    }
  }
  const label: Record<Row, string> = { stream: `TAKETHIS, ${WINDOW} in flight`, check: `CHECK+TAKETHIS, ${WINDOW} in flight`, ihave: 'IHAVE lock-step' };
  const f = (n: number) => (n < 100 ? n.toFixed(1) : n.toFixed(0));
  const out = [`NNTP feed (one peer, 127.0.0.1; ${ARTICLES} articles of ${arts2k()} octets per block, ${WARMUP} warm-up, refill ${HALF ? 'at half window' : 'per read'}, ${SETTLE ? 'sync + 1 s before each block' : 'no settling'}, ${ROUNDS} rounds, all verified stored; load average ${os.loadavg()[0]!.toFixed(1)})`];
  out.push(`  ${''.padEnd(40)}${targets.map((t) => t.name.padStart(16)).join('')}   ratio per round`);
  for (const row of rows) {
    const a = res.get(key(targets[0]!, row))!;
    const b = targets[1] ? res.get(key(targets[1], row))! : null;
    const sum = (xs: number[]) => xs.reduce((x, y) => x + y, 0);
    const mean = (xs: number[]) => (xs.length ? sum(xs) / xs.length : NaN);
    // each round's ratio, with both rates (k articles/s), so an outlier round shows which side it was
    const k = (x: number) => (x / 1000).toFixed(1);
    const ratios = b ? a.rate.map((x, i) => `${(x / b.rate[i]!).toFixed(2)} (${k(x)}/${k(b.rate[i]!)}k)`).join(' ') : '';
    // the rate over all rounds: articles ÷ total time (a mean of per-round rates would overweight a fast round)
    const overall = (x: { rate: number[] }) => x.rate.length / sum(x.rate.map((r) => 1 / r));
    out.push(`  ${`${label[row]} (articles/s)`.padEnd(40)}${[a, b].filter((x) => x).map((x) => f(overall(x!)).padStart(16)).join('')}   ${ratios}`);
    out.push(`  ${'  server CPU per article (µs)'.padEnd(40)}${[a, b].filter((x) => x).map((x) => (x!.cpu.length ? f(mean(x!.cpu)) : '-').padStart(16)).join('')}`);
  }
  out.push('  ratio > 1: Gatehouse faster (Gatehouse acknowledges after fsync; innd does not sync per article)');
  return out.join('\n');
}

function arts2k(): number {
  return articles('x', 1, 'g')[0]!.wire.length;
}
