import { stubListener } from '../net/stub-listener.js';
import type { Listener, Runtime } from '../runtime.js';

/** Placeholder until the FTP adapter lands: answers "not available" and closes. */
export function createFtpListener(rt: Runtime): Listener {
  return stubListener('ftp', rt.config.ftp.listen, rt);
}
