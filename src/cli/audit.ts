/*
 * `gatehouse audit [--config FILE] [--json]`: probe the running instance from loopback, the way an outside
 * tester would, and print a report card (one line per probe: PASS/FAIL/SKIP, what was tried, what the
 * server answered, the rule that held). Exit 0 when nothing failed, 1 otherwise.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { runAudit, targetsFromConfig, type ProbeResult } from '../ops/audit/probes.js';
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
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } }, strict: true });
  const config = loadConfig(values.config ?? configFile);
  const results = await runAudit({ config, targets: targetsFromConfig(config) });
  const failed = results.some((r) => r.status === 'FAIL');
  if (values.json) process.stdout.write(`${JSON.stringify({ config: config.source, ok: !failed, results }, null, 2)}\n`);
  else process.stdout.write(formatReport(results, `Gatehouse audit of ${config.hostname} (config: ${config.source})`));
  return failed ? 1 : 0;
}
