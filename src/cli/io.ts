/** Small helpers shared by CLI commands. */
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
