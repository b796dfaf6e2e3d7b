/*
 * Drop-box upload notices (issue 18, part 1). A share with `notify: { to, digest_s }` gets a mail to its readers
 * after uploads, listing file name as stored, size, SHA-256, uploader, client address and time.
 *
 * Durability (recover at start-up): after an upload is committed (its file renamed into place and fsynced) and
 * BEFORE its 226 is sent, `uploaded()` writes one record into the pending-notice journal
 * <state_dir>/notices/<time>-<random>.json (temp file, fsync, rename, fsync of the folder). Nothing is sent
 * inline. A digester, every second, takes each share whose oldest pending record is `digest_s` old, builds ONE
 * message listing all of that share's records (kept in memory, loaded from the folder once at start), hands it to the SMTP queue's durable enqueue (resolves only once
 * the message is fsynced in the spool) and only then deletes the records. So:
 *   - a crash between the 226 and the queueing loses nothing: the records are on disk and the next start digests
 *     them (a window that passed while the server was down is due at once);
 *   - a crash between the enqueue and the deletion sends that digest twice (at-least-once, never lost);
 *   - an aborted, refused or over-quota upload never reaches `uploaded()` (the FTP session calls it only on the
 *     commit path), so it has no record and no notice.
 *
 * Header safety: no uploaded name or client-supplied text goes into a header. The Subject carries the share path
 * (config, a /[A-Za-z0-9._-]+ name) and a count; the body is UTF-8 text in which every name is written as a
 * JSON string (CR, LF, other controls escaped; `=?` is inert in a body). To: is `undisclosed-recipients:;`, so no
 * reader sees the others, and the uploader is never told who reads (the FTP replies do not change).
 * Readers: `user` (a local mailbox), `group:<g>` (each user of the group), or an address; every one is decided by
 * the policy core (policy/gateway decideNoticeRecipient: local users must exist, remote addresses get the relay
 * verdict for the server's own origin). Local readers get the message in their Maildir via the queue.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ensureDir, writeFileDurable } from '../net/atomic.js';
import type { Logger } from '../net/log.js';
import { randomHex } from '../net/random.js';
import { NOBODY, type NormalizedAddress } from '../policy/index.js';
import type { Runtime, ServiceHub, UploadNoticeSink } from '../runtime.js';
import type { ShareConfig } from '../config/schema.js';

export interface NoticeRecord {
  readonly v: 1;
  readonly share: string;
  /** the stored file's virtual path, e.g. /dropbox/report.pdf */
  readonly name: string;
  readonly bytes: number;
  readonly sha256: string;
  readonly uploader: string;
  readonly ip: string;
  /** ms since epoch, when the upload was committed */
  readonly time: number;
  readonly session: string;
}

interface Pending {
  readonly file: string;
  readonly rec: NoticeRecord;
}

const RECORD_RE = /^\d{13}-[0-9a-f]{12}\.json$/;

export function noticesDir(stateDir: string): string {
  return path.join(stateDir, 'notices');
}

/** A name for a mail body: a JSON string (controls, CR, LF, quotes escaped), so it stays on its own line. */
export function escapeName(s: string): string {
  // JSON.stringify escapes C0 controls, " and \; escape DEL, C1 controls and the line/paragraph separators too
  return JSON.stringify(s).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

async function sha256File(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  const fh = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    for await (const chunk of fh.createReadStream({ autoClose: false })) hash.update(chunk as Buffer);
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}

function rfc5322Date(d: Date): string {
  return d.toUTCString().replace(/GMT$/, '+0000');
}

/** The digest message for one share (CRLF lines). Exported for tests. */
export function buildDigest(hostname: string, share: string, records: readonly NoticeRecord[], now: Date): Buffer {
  const n = records.length;
  const head = [
    `From: Gatehouse <postmaster@${hostname}>`,
    'To: undisclosed-recipients:;',
    `Subject: [Gatehouse] ${n} upload${n === 1 ? '' : 's'} to ${share}`,
    `Date: ${rfc5322Date(now)}`,
    `Message-ID: <${now.getTime().toString(36)}.${randomHex(8)}.notice@${hostname}>`,
    'Auto-Submitted: auto-generated',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
  ];
  const body = [`${n} file${n === 1 ? '' : 's'} arrived in ${share}:`, ''];
  for (const r of records) {
    body.push(`file:     ${escapeName(r.name)}`);
    body.push(`size:     ${r.bytes} bytes`);
    body.push(`sha256:   ${r.sha256}`);
    body.push(`uploader: ${escapeName(r.uploader)}`);
    body.push(`client:   ${escapeName(r.ip)}`);
    body.push(`time:     ${new Date(r.time).toISOString()}`);
    body.push('');
  }
  body.push('-- ', `Gatehouse on ${hostname}: notice for the drop box ${share}`);
  return Buffer.from(`${head.join('\r\n')}\r\n\r\n${body.join('\r\n')}\r\n`, 'utf8');
}

export class UploadNotices implements UploadNoticeSink {
  private timer: NodeJS.Timeout | null = null;
  private busy: Promise<void> | null = null;
  private readonly dir: string;
  /** the journal's records in commit order; only this process writes the journal, so memory mirrors the folder */
  private pending: Pending[];
  /** shares whose notices wait for the SMTP queue (logged once) */
  private readonly waiting = new Set<string>();

  constructor(
    private readonly rt: () => Runtime,
    private readonly hub: ServiceHub,
    private readonly tickMs = 1000,
  ) {
    this.dir = noticesDir(rt().config.paths.stateDir);
    ensureDir(this.dir);
    this.pending = this.loadJournal();
    if (this.pending.length > 0) this.log.info({ event: 'notice_recover', records: this.pending.length }, 'pending upload notices recovered from the journal');
  }

  private get log(): Logger {
    return this.rt().log.child({ svc: 'ftp', component: 'notices' });
  }

  private shareOf(mount: string): ShareConfig | undefined {
    return this.rt().config.ftp.shares.find((s) => s.path === mount && s.notify);
  }

  async uploaded(u: Parameters<UploadNoticeSink['uploaded']>[0]): Promise<void> {
    const share = this.shareOf(u.mount);
    if (!share) return;
    try {
      const rec: NoticeRecord = { v: 1, share: share.path, name: u.virtual, bytes: u.bytes, sha256: await sha256File(u.abs), uploader: u.uploader, ip: u.ip, time: Date.now(), session: u.session };
      const file = path.join(this.dir, `${rec.time}-${randomHex(6)}.json`);
      await writeFileDurable(file, JSON.stringify(rec));
      this.pending.push({ file, rec });
    } catch (err) {
      // the file is stored and the client is owed its 226; the missing notice is said loudly
      this.log.error({ event: 'notice_journal_failed', share: share.path, name: u.virtual, session: u.session, error: String(err) }, 'upload notice could not be journaled');
    }
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
    this.tick();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.busy;
  }

  /** One digest pass (never overlapping another). */
  tick(): void {
    if (this.busy) return;
    this.busy = this.digest()
      .catch((err: unknown) => this.log.error({ event: 'notice_digest_failed', error: String(err) }, 'upload notice digest failed; retried on the next tick'))
      .finally(() => {
        this.busy = null;
      });
  }

  private loadJournal(): Pending[] {
    const out: Pending[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      if (!RECORD_RE.test(name)) continue;
      const file = path.join(this.dir, name);
      try {
        const rec = JSON.parse(fs.readFileSync(file, 'utf8')) as NoticeRecord;
        if (rec.v === 1 && typeof rec.share === 'string' && typeof rec.time === 'number') out.push({ file, rec });
        else throw new Error('not a notice record');
      } catch {
        this.log.error({ event: 'notice_corrupt', file: name }, 'unreadable upload notice record moved aside');
        try {
          fs.renameSync(file, `${file}.corrupt`);
        } catch {
          /* left in place; skipped again next start */
        }
      }
    }
    return out.sort((x, y) => x.rec.time - y.rec.time);
  }

  private async digest(): Promise<void> {
    const pending = this.pending;
    if (pending.length === 0) return;
    const byShare = new Map<string, Pending[]>();
    for (const p of pending) byShare.set(p.rec.share, [...(byShare.get(p.rec.share) ?? []), p]);
    const now = Date.now();
    for (const [sharePath, items] of byShare) {
      const share = this.shareOf(sharePath);
      if (!share?.notify) {
        this.log.warn({ event: 'notice_dropped', share: sharePath, records: items.length }, 'share no longer asks for notices; pending records dropped');
        await this.remove(items);
        continue;
      }
      if (now - items[0]!.rec.time < share.notify.digest_s * 1000) continue;
      const mail = this.hub.mail;
      if (!mail) {
        if (this.waiting.has(sharePath)) continue; // said once, not every second
        this.waiting.add(sharePath);
        this.log.warn({ event: 'notice_waiting', share: sharePath, records: items.length }, 'SMTP queue not running; upload notices wait in the journal');
        continue;
      }
      this.waiting.delete(sharePath);
      const recipients = this.readers(share);
      if (recipients.length === 0) {
        this.log.warn({ event: 'notice_dropped', share: sharePath, records: items.length }, 'no permitted reader for the notice; records dropped');
        await this.remove(items);
        continue;
      }
      const rt = this.rt();
      const data = buildDigest(rt.config.hostname, sharePath, items.map((p) => p.rec), new Date(now));
      const id = await mail.enqueue({ sender: '', recipients, clientIp: '127.0.0.1', helo: rt.config.hostname, user: null, tls: false, session: `notice-${randomHex(4)}` }, data);
      this.log.info({ event: 'notice_queued', share: sharePath, id, files: items.length, rcpts: recipients.length }, 'upload notice queued');
      await this.remove(items);
    }
  }

  private async remove(items: readonly Pending[]): Promise<void> {
    const gone = new Set(items);
    this.pending = this.pending.filter((p) => !gone.has(p));
    for (const p of items) await fsp.rm(p.file, { force: true });
  }

  /** The share's readers as addresses, each decided by the policy core. */
  private readers(share: ShareConfig): NormalizedAddress[] {
    const rt = this.rt();
    const domain = rt.config.smtp.local_domains[0] ?? rt.config.hostname;
    const raw = new Set<string>();
    for (const t of share.notify?.to ?? []) {
      if (t.startsWith('group:')) {
        const g = t.slice(6);
        for (const u of rt.users.list()) if (u.groups.includes(g)) raw.add(`${u.name}@${domain}`);
      } else raw.add(t.includes('@') ? t : `${t}@${domain}`);
    }
    const ctx = { service: 'smtp' as const, ip: '127.0.0.1', identity: NOBODY, session: `notice-${share.path}` };
    const out: NormalizedAddress[] = [];
    for (const a of raw) {
      const r = rt.policy.noticeRecipient(ctx, a);
      if (r.address) out.push(r.address);
    }
    return out;
  }
}
