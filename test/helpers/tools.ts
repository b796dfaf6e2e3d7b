/*
 * Whether an outside client a test drives (tin, slrn, swaks, lftp…) is installed. Tests that need one skip, and
 * say so, when it is missing; `.ci/run` installs every one of them.
 */
import { execFileSync } from 'node:child_process';

/** True when `cmd …args` runs and exits 0 within 5 s (args: whatever prints a version quickly). */
export function installed(cmd: string, args: readonly string[] = ['--version']): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}
