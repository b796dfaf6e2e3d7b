/*
 * `gatehouse feed list [--json] | feed flush`: the outgoing NNTP feeds (nntp.peers with direction out or both).
 * Reads the per-peer queues under <state_dir>/news/feeds directly, with or without a running daemon, and changes
 * nothing in them. `flush` leaves the marker <news>/feeds/flush that the feeders poll (about once a second): their
 * backoff ends and they run now.
 * Exit codes: 0 ok, 2 usage.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { ensureDir, writeFileDurableSync } from '../net/atomic.js';
import { FeedQueue } from '../nntp/feed-queue.js';
import { usageError } from './io.js';

const USAGE = 'usage: gatehouse feed list [--json] | feed flush';

/** Terminal-safe: a Message-ID came from a client. */
const clean = (v: string) => v.replace(/[^\x20-\x7e]/g, '?').slice(0, 250);

export function feedCommand(args: string[], configFile: string | undefined): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } }, allowPositionals: true, strict: true });
  const [sub, ...extra] = positionals;
  if (!sub || extra.length > 0) throw usageError(USAGE);
  const config = loadConfig(values.config ?? configFile);
  const peers = config.nntp.peers.filter((p) => p.direction !== 'in');
  const newsDir = config.paths.newsDir;
  switch (sub) {
    case 'list': {
      const rows = peers.map((p) => {
        const q = FeedQueue.inspect(newsDir, p.name);
        return { peer: p.name, host: p.host, port: p.port, tls: p.tls, queued: q.pending.length, oldest: q.pending[0] ?? null };
      });
      if (values.json) process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      else if (rows.length === 0) process.stdout.write('no outgoing peers (nntp.peers with direction out or both)\n');
      else {
        process.stdout.write(`${['PEER', 'ADDRESS', 'TLS', 'QUEUED', 'OLDEST'].join('\t')}\n`);
        for (const r of rows) process.stdout.write(`${[clean(r.peer), `${clean(r.host)}:${r.port}`, r.tls ? 'yes' : 'no', String(r.queued), r.oldest ? clean(r.oldest) : '-'].join('\t')}\n`);
      }
      return Promise.resolve(0);
    }
    case 'flush': {
      const dir = path.join(newsDir, 'feeds');
      ensureDir(dir);
      writeFileDurableSync(path.join(dir, 'flush'), `${Date.now()}\n`, 0o600);
      const n = peers.reduce((sum, p) => sum + FeedQueue.inspect(newsDir, p.name).pending.length, 0);
      process.stdout.write(`flush requested: ${n} queued article(s) for ${peers.length} peer(s) will be offered now (if gatehouse is running)\n`);
      return Promise.resolve(0);
    }
    default:
      throw usageError(USAGE);
  }
}
