/*
 * The SMTP service: the smtp-server adapter (listener.ts) in front of the durable queue (queue.ts).
 */
import type { Listener, Runtime } from '../runtime.js';
import { createListener } from './listener.js';
import { createMailQueue } from './queue.js';

export function createSmtpListener(rt: Runtime): Listener {
  return createListener(rt, createMailQueue(rt));
}
