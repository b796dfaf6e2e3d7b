/*
 * Outgoing NNTP feeds: for each peer of nntp.peers with direction out or both, a durable queue (feed-queue.ts)
 * and a feeder that connects to the peer (TLS when its `tls` is set; AUTHINFO with its password_file), asks
 * CAPABILITIES, streams (MODE STREAM, then CHECK / TAKETHIS, RFC 4644) when the peer offers STREAMING (or, not
 * knowing CAPABILITIES, answers MODE STREAM with 203), and falls back to IHAVE (RFC 3977 §6.3.2) otherwise.
 *
 * At-least-once: an article is queued (durably) before the POST or feed that brought it is acknowledged, and
 * leaves the queue only once the peer answered it: taken (235/239), already had (435/438), or refused for good
 * (437/439). "Try later" (436/431), a lost connection or a timeout stop the run and retry it after a backoff
 * (1 s doubling to 5 min). `gatehouse feed flush` leaves <news>/feeds/flush, polled once a second: the backoff
 * ends and every feeder runs now.
 *
 * Start-up recovery: an article stored (durably) but not yet queued when the process died is found among the
 * store's arrivals after the queue's last Message-ID and queued then.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { groupMatches } from '../policy/feed.js';
import type { NntpConfig } from '../config/schema.js';
import type { Runtime } from '../runtime.js';
import { parseHead } from './article.js';
import { FeedQueue, type QueueEntry } from './feed-queue.js';
import type { ArticleStore, StoredArticle } from './store.js';

type PeerConfig = NntpConfig['peers'][number];

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 300_000;
const REPLY_TIMEOUT_MS = 60_000;
const BATCH = 200;

const managers = new WeakMap<ArticleStore, FeedOut>();

/** Queue a stored article for every outgoing peer that wants it; resolves once the queues are on disk. */
export async function enqueueFeeds(store: ArticleStore, a: StoredArticle): Promise<void> {
  await managers.get(store)?.enqueue(a);
}

export function wants(peer: PeerConfig, a: StoredArticle): boolean {
  if (peer.direction === 'in') return false;
  const pathValue = parseHead(a.head).get('path') ?? '';
  const elements = pathValue.split('!').map((e) => e.trim().toLowerCase());
  if (elements.includes(peer.name.toLowerCase()) || elements.includes(peer.host.toLowerCase())) return false; // came from there
  return Object.keys(a.numbers).some((g) => groupMatches(peer.groups, g));
}

/**
 * How to feed a peer, from its answer to CAPABILITIES (RFC 3977 §5.2) and the capability lines:
 *   stream  it lists STREAMING (RFC 4644 §2.1): MODE STREAM, then CHECK / TAKETHIS
 *   try     it does not know CAPABILITIES (500 / 501: a server older than RFC 3977, such as INN 2.4, which
 *           streams all the same): ask MODE STREAM and stream on 203 (RFC 4644 §2.3 lets a client try)
 *   ihave   anything else (capabilities without STREAMING, or a refusal): IHAVE, one article at a time
 * A capability line is matched on its first word, case-insensitively (arguments and trailing blanks ignored).
 */
export function feedMode(capsReply: string, caps: readonly string[]): 'stream' | 'try' | 'ihave' {
  if (/^101\b/.test(capsReply)) return caps.some((l) => l.trim().split(/\s+/)[0]!.toUpperCase() === 'STREAMING') ? 'stream' : 'ihave';
  return /^50[01]\b/.test(capsReply) ? 'try' : 'ihave';
}

export class FeedOut {
  private readonly feeders = new Map<string, PeerFeeder>();
  private poll: NodeJS.Timeout | null = null;

  private constructor(
    private rt: Runtime,
    private readonly store: ArticleStore,
  ) {}

  static async start(rt: Runtime, store: ArticleStore): Promise<FeedOut> {
    const f = new FeedOut(rt, store);
    managers.set(store, f);
    await f.configure(rt);
    f.poll = setInterval(() => f.checkFlush(), 1000);
    f.poll.unref();
    return f;
  }

  private get flushMarker(): string {
    return path.join(this.rt.config.paths.newsDir, 'feeds', 'flush');
  }

  async configure(rt: Runtime): Promise<void> {
    this.rt = rt;
    for (const peer of rt.config.nntp.peers) {
      if (peer.direction === 'in') continue;
      const existing = this.feeders.get(peer.name);
      if (existing) {
        existing.peer = peer;
        continue;
      }
      const queue = await FeedQueue.open(rt.config.paths.newsDir, peer.name);
      const feeder = new PeerFeeder(() => this.rt, this.store, queue, peer);
      this.feeders.set(peer.name, feeder);
      await this.recover(feeder);
      feeder.kick();
    }
  }

  /** Articles stored after the queue's last Message-ID (a crash between the store write and the queue write). */
  private async recover(f: PeerFeeder): Promise<void> {
    const last = f.queue.lastId;
    if (last === null) return; // a new peer starts from now
    const from = this.store.byMessageId(last);
    if (!from) return;
    const later = this.store.arrivedSince(from.arrived);
    const at = later.indexOf(from);
    const missing = later.slice(at + 1).filter((a) => wants(f.peer, a)).map((a) => a.messageId);
    if (missing.length > 0) {
      this.rt.log.info({ event: 'nntp_feed_recovered', peer: f.peer.name, count: missing.length }, 'queued articles stored before a crash');
      await f.queue.append(missing);
    }
  }

  async enqueue(a: StoredArticle): Promise<void> {
    if (this.feeders.size === 0) return; // no outgoing peers (the usual case): nothing to look at
    const targets = [...this.feeders.values()].filter((f) => wants(f.peer, a));
    await Promise.all(targets.map((f) => f.queue.append([a.messageId])));
    for (const f of targets) f.kick();
  }

  private checkFlush(): void {
    if (!fs.existsSync(this.flushMarker)) return;
    try {
      fs.unlinkSync(this.flushMarker);
    } catch {
      /* another poll took it */
    }
    for (const f of this.feeders.values()) f.flush();
  }

  async stop(): Promise<void> {
    if (this.poll) clearInterval(this.poll);
    this.poll = null;
    await Promise.all([...this.feeders.values()].map((f) => f.stop()));
    managers.delete(this.store);
  }
}

class PeerFeeder {
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private backoff = 0;
  private stopped = false;
  private socket: net.Socket | null = null;
  private again = false;
  /** the peer's reply that ended the last batch early (436, 431, 480…), for the log */
  private stoppedBy: string | null = null;

  constructor(
    private readonly rtOf: () => Runtime,
    private readonly store: ArticleStore,
    readonly queue: FeedQueue,
    public peer: PeerConfig,
  ) {}

  kick(): void {
    if (this.stopped || this.timer) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.run().finally(() => {
      this.running = null;
      if (this.again && !this.timer) {
        this.again = false;
        this.kick();
      }
    });
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.backoff = 0;
    this.kick();
  }

  private async run(): Promise<void> {
    if (this.queue.length === 0) return;
    const rt = this.rtOf();
    try {
      await this.session();
      this.backoff = 0;
    } catch (err) {
      if (this.stopped) return;
      this.backoff = Math.min(BACKOFF_MAX_MS, this.backoff === 0 ? BACKOFF_MIN_MS : this.backoff * 2);
      rt.log.warn({ event: 'nntp_feed_error', peer: this.peer.name, error: String(err), retry_ms: this.backoff, queued: this.queue.length }, 'feed to peer failed, will retry');
      this.timer = setTimeout(() => {
        this.timer = null;
        this.kick();
      }, this.backoff);
      this.timer.unref();
    } finally {
      this.socket?.destroy();
      this.socket = null;
    }
  }

  private async session(): Promise<void> {
    const rt = this.rtOf();
    this.stoppedBy = null;
    const c = await LineClient.connect(this.peer);
    this.socket = c.socket;
    const greet = await c.line();
    if (!/^20[01]/.test(greet)) throw new Error(`greeting: ${greet}`);
    if (this.peer.password_file !== null) {
      const secret = fs.readFileSync(this.peer.password_file, 'utf8').split(/\r?\n/)[0] ?? '';
      if (!(await c.cmd(`AUTHINFO USER ${this.peer.name}`)).startsWith('381')) throw new Error('AUTHINFO USER refused');
      if (!(await c.cmd(`AUTHINFO PASS ${secret}`)).startsWith('281')) throw new Error('AUTHINFO PASS refused'); // never logged
    }
    const capsReply = await c.cmd('CAPABILITIES');
    const caps = capsReply.startsWith('101') ? await c.block() : [];
    const mode = feedMode(capsReply, caps);
    const streaming = mode !== 'ihave' && (await c.cmd('MODE STREAM')).startsWith('203');
    let sent = 0;
    while (!this.stopped) {
      const batch = this.queue.pending(BATCH);
      if (batch.length === 0) break;
      const answered = streaming ? await this.stream(c, batch) : await this.ihave(c, batch);
      if (answered !== null) await this.queue.done(answered);
      sent += batch.indexOf(answered!) + 1;
      if (answered !== batch[batch.length - 1]) throw new Error(`peer asked to try later: ${this.stoppedBy ?? 'no reply'}`);
    }
    c.write('QUIT\r\n');
    rt.log.info({ event: 'nntp_feed_sent', peer: this.peer.name, answered: sent, mode: streaming ? 'stream' : 'ihave' }, 'feed run done');
  }

  private async article(id: string): Promise<Buffer | null> {
    const a = this.store.byMessageId(id);
    if (!a) return null;
    return dotStuff(await this.store.read(a));
  }

  /** CHECK the batch (pipelined), TAKETHIS the wanted ones (pipelined); the last entry answered in order, or null. */
  private async stream(c: LineClient, batch: QueueEntry[]): Promise<QueueEntry | null> {
    c.write(batch.map((e) => `CHECK ${e.id}\r\n`).join(''));
    const want: boolean[] = [];
    let stopAt = batch.length;
    for (let i = 0; i < batch.length; i++) {
      const r = await c.line();
      if (r.startsWith('238')) want.push(true);
      else if (r.startsWith('438')) want.push(false);
      else {
        want.push(false);
        if (stopAt === batch.length) {
          stopAt = i; // 431 (or anything else): this one and the rest wait
          this.stoppedBy = `CHECK ${batch[i]!.id}: ${r}`;
        }
      }
    }
    const send: QueueEntry[] = [];
    for (let i = 0; i < stopAt; i++) {
      if (!want[i]) continue;
      const bytes = await this.article(batch[i]!.id);
      if (!bytes) continue;
      c.write(`TAKETHIS ${batch[i]!.id}\r\n`);
      c.write(bytes);
      send.push(batch[i]!);
    }
    for (const e of send) {
      const r = await c.line();
      if (!r.startsWith('239') && !r.startsWith('439')) throw new Error(`TAKETHIS ${e.id}: ${r}`);
    }
    return stopAt > 0 ? batch[stopAt - 1]! : null;
  }

  private async ihave(c: LineClient, batch: QueueEntry[]): Promise<QueueEntry | null> {
    let last: QueueEntry | null = null;
    for (const e of batch) {
      const r = await c.cmd(`IHAVE ${e.id}`);
      if (r.startsWith('435')) {
        last = e;
        continue;
      }
      if (!r.startsWith('335')) {
        this.stoppedBy = `IHAVE ${e.id}: ${r}`; // 436: try later (480, 502…: named in the log)
        break;
      }
      const bytes = (await this.article(e.id)) ?? Buffer.from('.\r\n'); // gone meanwhile: an empty article, refused
      c.write(bytes);
      const done = await c.line();
      if (!/^(235|435|437)/.test(done)) {
        this.stoppedBy = `IHAVE ${e.id} article: ${done}`;
        break;
      }
      last = e;
    }
    return last;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.socket?.destroy();
    await this.running;
    await this.queue.close();
  }
}

/** Dot-stuffed and terminated, ready to send. */
function dotStuff(article: Buffer): Buffer {
  const text = article.toString('latin1').replace(/^\./gm, '..');
  return Buffer.from(`${text}${text.endsWith('\r\n') || text === '' ? '' : '\r\n'}.\r\n`, 'latin1');
}

/** A minimal NNTP client: one reply line at a time, bounded waits. */
class LineClient {
  private buf = '';
  private waiter: (() => void) | null = null;
  private ended = false;

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.buf += d.toString('latin1');
      if (this.buf.length > 1024 * 1024) socket.destroy(); // a peer flooding replies
      this.waiter?.();
    });
    const end = () => {
      this.ended = true;
      this.waiter?.();
    };
    socket.on('close', end);
    socket.on('error', end);
  }

  static connect(peer: PeerConfig): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const opts = { host: peer.host, port: peer.port };
      const sock = peer.tls ? tls.connect({ ...opts, servername: net.isIP(peer.host) ? undefined : peer.host }) : net.connect(opts);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error('connect timeout'));
      }, REPLY_TIMEOUT_MS);
      sock.once(peer.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        resolve(new LineClient(sock));
      });
      sock.once('error', (err: Error) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  async cmd(text: string): Promise<string> {
    this.write(`${text}\r\n`);
    return this.line();
  }

  async line(): Promise<string> {
    const deadline = Date.now() + REPLY_TIMEOUT_MS;
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl >= 0) {
        const l = this.buf.slice(0, nl).replace(/\r$/, '');
        this.buf = this.buf.slice(nl + 1);
        return l;
      }
      if (this.ended) throw new Error('connection closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('reply timeout');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiter = null;
    }
  }

  async block(): Promise<string[]> {
    const out: string[] = [];
    for (let l = await this.line(); l !== '.'; l = await this.line()) out.push(l.startsWith('..') ? l.slice(1) : l);
    return out;
  }
}
