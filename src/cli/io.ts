/** Small helpers shared by CLI commands. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { GatehouseError } from '../errors.js';

export async function readStdin(limit = 4096): Promise<string> {
  if (process.stdin.isTTY) throw new GatehouseError('GH_ERR_USAGE', '--password-stdin: pipe the password in, e.g. `printf %s "$PW" | gatehouse user add alice --password-stdin`');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > limit) throw new GatehouseError('GH_ERR_USAGE', 'standard input is too long for a password');
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

export function usageError(message: string): GatehouseError {
  return new GatehouseError('GH_ERR_USAGE', message, 2);
}

/**
 * node:util parseArgs in strict mode, with its complaints (unknown option, missing value, stray argument)
 * turned into a usage error (exit 2) that ends with the command's usage.
 */
export function parseCommandArgs<T extends ParseArgsConfig>(config: T, usage: string): ReturnType<typeof parseArgs<T & { strict: true }>> {
  try {
    return parseArgs({ ...config, strict: true });
  } catch (err) {
    const parseError = asParseArgsError(err);
    if (parseError) throw usageError(`${parseError}\n${usage}`);
    throw err;
  }
}

/** The message of one of parseArgs' own errors (ERR_PARSE_ARGS_*), or null for anything else. */
export function asParseArgsError(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_') && err instanceof Error ? err.message : null;
}
