import { stubListener } from '../net/stub-listener.js';
import type { Listener, Runtime } from '../runtime.js';

/** Placeholder until the SMTP adapter lands: answers "not available" and closes. */
export function createSmtpListener(rt: Runtime): Listener {
  return stubListener('smtp', rt.config.smtp.listen, rt);
}
