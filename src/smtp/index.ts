/*
 * The SMTP service: the smtp-server adapter (listener.ts) in front of the durable queue (queue.ts).
 */
import type { Listener, Runtime } from '../runtime.js';
import { createListener } from './listener.js';
import { createMailQueue } from './queue.js';

export function createSmtpListener(rt: Runtime): Listener {
  const queue = createMailQueue(rt);
  const listener = createListener(rt, queue);
  // the queue's durable enqueue is offered to other services (upload notices) while the listener runs
  return {
    service: listener.service,
    async start() {
      const bound = await listener.start();
      if (rt.hub) rt.hub.mail = queue;
      return bound;
    },
    reload: (next) => listener.reload(next),
    async stop(graceMs) {
      if (rt.hub?.mail === queue) rt.hub.mail = null;
      await listener.stop(graceMs);
    },
  };
}
