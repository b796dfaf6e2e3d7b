#!/usr/bin/env node
/*
 * The `gatehouse` command. A small subcommand table over node:util parseArgs; each command lives in its
 * own file. Errors print one clear message (no stack) and exit with the command's code (2 for bad input).
 */
import { GatehouseError } from '../errors.js';
import { COMMANDS, usage } from './commands.js';

// `gatehouse log | head` and friends: a closed pipe ends the command quietly, not with a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

async function main(argv: string[]): Promise<number> {
  // Global --config may come before the command: gatehouse --config FILE check
  const args = [...argv];
  let configFile: string | undefined;
  while (args[0] === '--config' || args[0] === '-c') {
    configFile = args[1];
    args.splice(0, 2);
  }
  const [name, ...rest] = args;
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`gatehouse: unknown command ${JSON.stringify(name)}\n${usage()}`);
    return 2;
  }
  return command(rest, configFile);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof GatehouseError) {
      process.stderr.write(`gatehouse: ${err.message}\n`);
      process.exitCode = err.exitCode;
    } else {
      process.stderr.write(`gatehouse: unexpected error: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 70;
    }
  },
);
