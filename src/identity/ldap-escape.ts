/*
 * Escaping for values put into LDAP filters (RFC 4515 §3) and DNs (RFC 4514 §2.4). A login name is hostile
 * input: `*`, `(`, `)`, `\`, NUL or non-ASCII in it must never change the meaning of a search or a DN.
 */

/**
 * RFC 4515 assertion value: every byte outside printable ASCII, and `*` `(` `)` `\`, as `\XX`. Non-ASCII is
 * escaped byte by byte from UTF-8 (allowed by the RFC, and it leaves no multi-byte sequence to misparse).
 */
export function escapeFilterValue(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const safe = byte >= 0x20 && byte < 0x7f && byte !== 0x2a && byte !== 0x28 && byte !== 0x29 && byte !== 0x5c;
    out += safe ? String.fromCharCode(byte) : `\\${byte.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** Fill `{user}` / `{dn}` placeholders of a configured filter with escaped values. */
export function fillFilter(template: string, values: Readonly<Record<string, string>>): string {
  return template.replace(/\{(user|dn)\}/g, (_m, key: string) => escapeFilterValue(values[key] ?? ''));
}

/**
 * RFC 4514 attribute value: `"` `+` `,` `;` `<` `>` `\` `=` escaped with a backslash, a leading space or
 * `#` and a trailing space escaped, NUL and other control bytes and non-ASCII as `\XX` hex pairs.
 */
export function escapeDnValue(value: string): string {
  let out = '';
  const bytes = Buffer.from(value, 'utf8');
  bytes.forEach((byte, i) => {
    const ch = String.fromCharCode(byte);
    if (byte < 0x20 || byte >= 0x7f) out += `\\${byte.toString(16).padStart(2, '0')}`;
    else if ('"+,;<>\\='.includes(ch)) out += `\\${ch}`;
    else if ((i === 0 && (ch === ' ' || ch === '#')) || (i === bytes.length - 1 && ch === ' ')) out += `\\${ch}`;
    else out += ch;
  });
  return out;
}

/** The value of the first RDN of a DN (e.g. the CN of a group DN), unescaped; null if it cannot be read. */
export function firstRdnValue(dn: string): { attr: string; value: string } | null {
  const m = /^\s*([A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)*)\s*=((?:\\.|[^,+\\])*)/.exec(dn);
  if (!m) return null;
  const raw = m[2]!.replace(/^\s+/, '').replace(/(?<!\\)\s+$/, '');
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === '\\' && /^[0-9a-fA-F]{2}$/.test(raw.slice(i + 1, i + 3))) {
      bytes.push(parseInt(raw.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c === '\\' && i + 1 < raw.length) {
      bytes.push(...Buffer.from(raw[i + 1]!, 'utf8'));
      i += 1;
    } else bytes.push(...Buffer.from(c, 'utf8'));
  }
  return { attr: m[1]!.toLowerCase(), value: Buffer.from(bytes).toString('utf8') };
}

/** A DN in a comparable form: attribute names lower-cased, spaces around separators dropped, case-folded. */
export function normalizeDn(dn: string): string {
  return dn
    .split(/(?<!\\),/)
    .map((rdn) => rdn.trim().replace(/\s*=\s*/, '=').toLowerCase())
    .join(',');
}
