/*
 * `gatehouse queue list | flush | delete ID`: the operator's view of the SMTP spool. Works with or without a
 * running daemon, by reading the spool directly. `flush` leaves a marker the delivery worker polls for (about
 * once a second), so no signal is needed; `delete` removes the entry's message file (which is what makes it
 * exist), and the worker re-reads an entry before each attempt and checks it before each state write, so it
 * drops a deleted entry instead of reviving it.
 * Exit codes: 0 ok, 1 no such entry, 2 usage.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { isSafeId, Spool, type QueueEntry } from '../smtp/spool.js';
import { usageError } from './io.js';

const USAGE = 'usage: gatehouse queue list [--json] | queue flush | queue delete ID';

function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/** Terminal-safe: no control characters from a remote reply reach the operator's terminal. */
function clean(v: string, max = 200): string {
  return v.replace(/[^\x20-\x7e]/g, '?').slice(0, max);
}

function daemonRunning(stateDir: string): boolean {
  try {
    const pid = Number(fs.readFileSync(path.join(stateDir, 'gatehouse.pid'), 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 1) return false;
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function row(e: QueueEntry, now: number): string {
  const pending = e.recipients.filter((r) => r.state === 'pending').map((r) => r.address);
  const done = e.recipients.length - pending.length;
  const rcpts = `${pending.map((a) => clean(a, 100)).join(',') || '-'}${done ? ` (+${done} done)` : ''}`;
  const next = e.nextAttemptAt > now ? ` next in ${age(e.nextAttemptAt - now)}` : '';
  return [e.id, age(now - e.createdAt), e.sender === '' ? '<>' : clean(e.sender, 100), rcpts, String(e.attempts), `${e.lastError ? clean(e.lastError) : '-'}${next}`].join('\t');
}

export async function queueCommand(args: string[], configFile: string | undefined): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } }, allowPositionals: true, strict: true });
  const [sub, id, ...extra] = positionals;
  const misuse = (why: string) => usageError(`${why}\n${USAGE}`);
  if (!sub) throw misuse('queue needs a subcommand');
  if (extra.length > 0 || (id !== undefined && sub !== 'delete')) throw misuse(`unexpected argument ${JSON.stringify(extra[0] ?? id)}`);
  if (!['list', 'flush', 'delete'].includes(sub)) throw misuse(`unknown queue subcommand ${JSON.stringify(sub)}`);
  const config = loadConfig(values.config ?? configFile);
  const spool = new Spool(config.paths.spoolDir);
  switch (sub) {
    case 'list': {
      const entries = spool.listSync();
      const now = Date.now();
      if (values.json) {
        process.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
        return 0;
      }
      const corrupt = fs.existsSync(path.join(spool.dir, 'corrupt')) ? fs.readdirSync(path.join(spool.dir, 'corrupt')).filter((n) => n.endsWith('.json')).length : 0;
      if (corrupt > 0) process.stderr.write(`note: ${corrupt} unreadable entr${corrupt === 1 ? 'y' : 'ies'} kept aside in ${path.join(spool.dir, 'corrupt')} (never delivered)\n`);
      if (entries.length === 0) {
        process.stdout.write(`queue is empty (${spool.dir})\n`);
        return 0;
      }
      process.stdout.write(`${['ID', 'AGE', 'SENDER', 'RECIPIENTS', 'ATTEMPTS', 'LAST ERROR'].join('\t')}\n`);
      for (const e of entries) process.stdout.write(`${row(e, now)}\n`);
      process.stdout.write(`${entries.length} message(s)\n`);
      return 0;
    }
    case 'flush': {
      spool.requestFlushSync();
      const n = spool.idsSync().length;
      process.stdout.write(daemonRunning(config.paths.stateDir) ? `flush requested: ${n} message(s) will be retried now\n` : `flush requested: ${n} message(s) will be retried as soon as gatehouse starts (it is not running)\n`);
      return 0;
    }
    case 'delete': {
      if (!id) throw misuse('queue delete needs an ID');
      if (!isSafeId(id)) throw usageError(`not a queue id: ${JSON.stringify(clean(id, 80))} (ids are 8-64 characters of 0-9 a-z)`);
      if (!(await spool.exists(id)) || !(await spool.remove(id))) {
        process.stderr.write(`gatehouse: no message ${id} in the queue\n`);
        return 1;
      }
      process.stdout.write(`message ${id} deleted from the queue\n`);
      return 0;
    }
    default:
      throw usageError(USAGE);
  }
}
