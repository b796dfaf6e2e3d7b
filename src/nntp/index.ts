import { stubListener } from '../net/stub-listener.js';
import type { Listener, Runtime } from '../runtime.js';

/** Placeholder until the NNTP adapter lands: answers "not available" and closes. */
export function createNntpListener(rt: Runtime): Listener {
  return stubListener('nntp', rt.config.nntp.listen, rt);
}
