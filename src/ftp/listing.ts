/*
 * Listing lines: LIST's `ls -l` style (owner and group shown as `ftp ftp`, never the server's numeric ids) and
 * RFC 3659 §7 MLST/MLSD facts (type, size, modify, perm, unique). What may be listed and the `perm` letters
 * are decided elsewhere (policy/paths via JailFs); this file only formats.
 */
import crypto from 'node:crypto';
import type { Stats } from 'node:fs';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const HALF_YEAR_MS = 182 * 24 * 3600 * 1000;

const pad2 = (n: number) => String(n).padStart(2, '0');

/** One `ls -l` line, as vsftpd writes it (hide_ids): mode, links, `ftp ftp`, size, date, name. */
export function lsLine(st: Stats, name: string, now = Date.now()): string {
  const m = st.mode;
  const bits = 'rwxrwxrwx'
    .split('')
    .map((ch, i) => (m & (1 << (8 - i)) ? ch : '-'))
    .join('');
  const d = st.mtime;
  const recent = Math.abs(now - d.getTime()) < HALF_YEAR_MS;
  const when = `${MONTHS[d.getUTCMonth()]} ${pad2(d.getUTCDate())} ${recent ? `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}` : ` ${d.getUTCFullYear()}`}`;
  return `${st.isDirectory() ? 'd' : '-'}${bits} ${String(st.isDirectory() ? 2 : 1).padStart(3)} ftp      ftp      ${String(st.size).padStart(12)} ${when} ${name}`;
}

export const MLST_FACTS = ['type', 'size', 'modify', 'perm', 'unique'] as const;
export type MlstFact = (typeof MLST_FACTS)[number];
/** the facts a session gets until OPTS MLST says otherwise (FEAT marks them with `*`) */
export const MLST_DEFAULT: readonly MlstFact[] = ['type', 'size', 'modify', 'perm'];

/** FEAT's line: every fact supported, the default ones starred. */
export function mlstFeature(): string {
  return `MLST ${MLST_FACTS.map((f) => `${f}${MLST_DEFAULT.includes(f) ? '*' : ''};`).join('')}`;
}

/** OPTS MLST: the facts asked for that exist, in the server's order (unknown names are ignored, §7.9). */
export function selectFacts(arg: string): MlstFact[] {
  const asked = new Set(
    arg
      .split(';')
      .map((f) => f.trim().toLowerCase())
      .filter((f) => f !== ''),
  );
  return MLST_FACTS.filter((f) => asked.has(f));
}

/** per-process key: `unique` says "same object" without revealing inode numbers */
const UNIQUE_KEY = crypto.randomBytes(16);

function modify(d: Date): string {
  return `${d.getUTCFullYear()}${pad2(d.getUTCMonth() + 1)}${pad2(d.getUTCDate())}${pad2(d.getUTCHours())}${pad2(d.getUTCMinutes())}${pad2(d.getUTCSeconds())}`;
}

/** `fact=value;…` for one entry (no name); `perm` is the letters policy/paths granted. */
export function mlsxFacts(st: Stats, perm: string, facts: readonly MlstFact[]): string {
  let out = '';
  for (const f of facts) {
    if (f === 'type') out += `type=${st.isDirectory() ? 'dir' : 'file'};`;
    else if (f === 'size' && st.isFile()) out += `size=${st.size};`;
    else if (f === 'modify') out += `modify=${modify(st.mtime)};`;
    else if (f === 'perm') out += `perm=${perm};`;
    else if (f === 'unique') out += `unique=${crypto.createHmac('sha256', UNIQUE_KEY).update(`${st.dev}.${st.ino}`).digest('hex').slice(0, 16)};`;
  }
  return out;
}
