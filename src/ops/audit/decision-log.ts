/*
 * Which rule held: the audit marks the decision log before a probe and reads what was appended after it,
 * keeping the records of the probe's source address. Bounded (at most MAX_READ bytes per probe).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseRecord } from '../../cli/log.js';
import type { DecisionRecord } from '../../policy/audit.js';

const MAX_READ = 1 << 20;

export class DecisionTail {
  readonly file: string;

  constructor(logDir: string) {
    this.file = path.join(logDir, 'decisions.log');
  }

  mark(): number {
    try {
      return fs.statSync(this.file).size;
    } catch {
      return 0;
    }
  }

  since(mark: number, ip: string | null): DecisionRecord[] {
    let fd: number;
    try {
      fd = fs.openSync(this.file, 'r');
    } catch {
      return [];
    }
    try {
      const size = fs.fstatSync(fd).size;
      const from = size < mark ? 0 : mark; // rotated in between: the new file holds the tail
      const len = Math.min(size - from, MAX_READ);
      if (len <= 0) return [];
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, from);
      const out: DecisionRecord[] = [];
      for (const line of buf.toString('utf8').split('\n')) {
        const r = parseRecord(line);
        if (r && (ip === null || r.ip === ip || r.ip === `::ffff:${ip}`)) out.push(r);
      }
      return out;
    } finally {
      fs.closeSync(fd);
    }
  }
}

/**
 * The rule to show: for a refusal the last deny; for a hole the last allow past the connect phase (the
 * connection being let in is not what let the trick through). `-` when the policy core was not asked
 * (e.g. a TLS version refused by the handshake itself).
 */
export function ruleOf(records: readonly DecisionRecord[], refused: boolean): string {
  const pick = [...records].reverse().find((r) => (refused ? r.verdict === 'deny' : r.verdict === 'allow' && r.phase !== 'connect'));
  return pick ? pick.rule : '-';
}
