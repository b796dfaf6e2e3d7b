/*
 * `gatehouse audit [--config FILE] [--json] [--ftp-user NAME --password-stdin]`: probe the running instance
 * from loopback, the way an outside tester would, and print a report card (one line per probe: PASS/FAIL/SKIP, what was tried, what the
 * server answered, the rule that held). Exit 0 when nothing failed, 1 otherwise. With a test user the FTP
 * jail probes (traversal, PORT bounce, a symlink planted in the user's home) run as that user.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { runAudit, targetsFromConfig, type ProbeResult } from '../ops/audit/probes.js';
import { userName } from '../config/schema.js';
import { readStdin, usageError } from './io.js';
import { clean } from './log.js';

export function formatReport(results: readonly ProbeResult[], title: string): string {
  const count = (s: ProbeResult['status']) => results.filter((r) => r.status === s).length;
  const width = Math.max(...results.map((r) => r.id.length), 10);
  const lines = [title, ''];
  for (const r of results) {
    lines.push(`${r.status}  ${r.id.padEnd(width)}  ${clean(r.tried, 200)}`);
    lines.push(`      ${' '.repeat(width)}  → ${clean(r.answer, 300)}${r.rule === '-' ? '' : `  [rule: ${clean(r.rule, 80)}]`}`);
  }
  lines.push('', `${count('PASS')} passed, ${count('FAIL')} failed, ${count('SKIP')} skipped`);
  return `${lines.join('\n')}\n`;
}

export async function auditCommand(args: string[], configFile: string | undefined): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' }, 'ftp-user': { type: 'string' }, 'password-stdin': { type: 'boolean' } },
    strict: true,
  });
  let ftpUser: { name: string; password: string } | null = null;
  const name = values['ftp-user'];
  if (name !== undefined) {
    if (!userName.safeParse(name).success) throw usageError(`--ftp-user: ${JSON.stringify(name)} is not a user name`);
    if (!values['password-stdin']) throw usageError('--ftp-user needs --password-stdin (the test user\'s password on standard input)');
    const password = await readStdin();
    if (/[\r\n\0]/.test(password) || password === '') throw usageError('--password-stdin: expected one line');
    ftpUser = { name, password };
  }
  const config = loadConfig(values.config ?? configFile);
  const results = await runAudit({ config, targets: targetsFromConfig(config), ftpUser });
  const failed = results.some((r) => r.status === 'FAIL');
  if (values.json) process.stdout.write(`${JSON.stringify({ config: config.source, ok: !failed, results }, null, 2)}\n`);
  else process.stdout.write(formatReport(results, `Gatehouse audit of ${config.hostname} (config: ${config.source})`));
  return failed ? 1 : 0;
}
