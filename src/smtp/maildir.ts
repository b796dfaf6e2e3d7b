/*
 * Local delivery into <mailDir>/<user>/{tmp,new,cur} (Maildir, as Postfix's virtual(8) writes it): write the
 * message to tmp/ under a unique name, fsync, rename into new/, fsync new/. A crash leaves either nothing in
 * new/ or the whole message; tmp/ leftovers are harmless (readers ignore tmp/). The user name must be a safe
 * folder name (the user store only admits those); anything else is refused before a path is built.
 */
import crypto from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { ensureDir, fsyncDir, writeNewFileSynced } from '../net/atomic.js';

const USER = /^[a-z][a-z0-9._-]{0,31}$/;
let counter = 0;

export function maildirOf(mailDir: string, user: string): string {
  if (!USER.test(user) || user.includes('..')) throw new Error(`unsafe mailbox name ${JSON.stringify(user)}`);
  return path.join(mailDir, user);
}

/** A Maildir file name: time, microseconds, pid, counter and randomness, then the host (no / or :). */
export function maildirName(hostname: string, now = Date.now()): string {
  const sec = Math.floor(now / 1000);
  const usec = (now % 1000) * 1000 + Math.floor(Math.random() * 1000);
  counter = (counter + 1) % 1_000_000;
  const host = hostname.replace(/\//g, '\\057').replace(/:/g, '\\072');
  return `${sec}.M${usec}P${process.pid}Q${counter}R${crypto.randomBytes(6).toString('hex')}.${host}`;
}

/** Header line values must stay on one line and in ASCII. */
function headerValue(v: string): string {
  return v.replace(/[^\x20-\x7e]/g, '');
}

export interface MaildirDelivery {
  readonly mailDir: string;
  readonly user: string;
  readonly hostname: string;
  readonly sender: string;
  readonly recipient: string;
  readonly data: Buffer;
}

/** Deliver one copy; resolves with the path in new/ once it is durable. */
export async function deliverToMaildir(d: MaildirDelivery): Promise<string> {
  const box = maildirOf(d.mailDir, d.user);
  for (const sub of ['tmp', 'new', 'cur']) ensureDir(path.join(box, sub));
  const name = maildirName(d.hostname);
  const tmp = path.join(box, 'tmp', name);
  const final = path.join(box, 'new', name);
  const prefix = Buffer.from(`Return-Path: <${headerValue(d.sender)}>\r\nDelivered-To: ${headerValue(d.recipient)}\r\n`);
  await writeNewFileSynced(tmp, Buffer.concat([prefix, d.data]), 0o600);
  try {
    await fsp.link(tmp, final); // never replaces an existing message
  } finally {
    await fsp.rm(tmp, { force: true });
  }
  await fsyncDir(path.join(box, 'new'));
  return final;
}
