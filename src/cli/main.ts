#!/usr/bin/env node
/*
 * The `gatehouse` command. A small subcommand table over node:util parseArgs; each command lives in its
 * own file. Errors print one clear message (no stack) and exit with the command's code (2 for bad input).
 */
import { GatehouseError } from '../errors.js';
import { COMMANDS, commandUsage, usage } from './commands.js';
import { asParseArgsError, usageError } from './io.js';

// `gatehouse log | head` and friends: a closed pipe ends the command quietly, not with a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

/** Exit codes (README "Exit codes"): 0 ok, 1 no / refused / failed, 2 misuse or invalid input, 75 busy (try again), 70 a bug. */
const EXIT = { ok: 0, no: 1, usage: 2, internal: 70, tempfail: 75 } as const;

async function main(argv: string[]): Promise<number> {
  // Global --config may come before the command: gatehouse --config FILE check (or --config=FILE)
  const args = [...argv];
  let configFile: string | undefined;
  for (;;) {
    const first = args[0];
    if (first === '--config' || first === '-c') {
      if (args[1] === undefined || args[1].startsWith('-')) throw usageError(`${first} needs a FILE\n${usage()}`);
      configFile = args[1];
      args.splice(0, 2);
    } else if (first?.startsWith('--config=')) {
      configFile = first.slice('--config='.length);
      if (!configFile) throw usageError(`--config= needs a FILE\n${usage()}`);
      args.splice(0, 1);
    } else break;
  }
  const [name, ...rest] = args;
  if (name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(rest[0] && COMMANDS[rest[0]] ? `${commandUsage(rest[0])}\n` : usage());
    return EXIT.ok;
  }
  if (!name) {
    process.stderr.write(`gatehouse: no command given\n${usage()}`);
    return EXIT.usage;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`gatehouse: unknown command ${JSON.stringify(name)}\n${usage()}`);
    return EXIT.usage;
  }
  commandName = name;
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${commandUsage(name)}\n`);
    return EXIT.ok;
  }
  return command(rest, configFile);
}

let commandName: string | undefined;

/** What the operator sees for an error: one line (plus usage for misuse), never a stack. */
function report(err: unknown): { message: string; exitCode: number } {
  if (err instanceof GatehouseError) {
    if (err.code === 'GH_ERR_USAGE' && !/(^|\n)usage: /.test(err.message)) return { message: `${err.message}\n${commandUsage(commandName)}`, exitCode: err.exitCode };
    return { message: err.message, exitCode: err.exitCode };
  }
  const parse = asParseArgsError(err);
  if (parse) return { message: `${parse}\n${commandUsage(commandName)}`, exitCode: EXIT.usage };
  // A file-system refusal (a folder not writable, a disk full) is the machine's answer, not a bug: say which file.
  const e = err as NodeJS.ErrnoException | null;
  if (e && typeof e.code === 'string' && typeof e.syscall === 'string') {
    return { message: `cannot ${e.syscall}${e.path ? ` ${e.path}` : ''}: ${e.code}${e.code === 'EACCES' || e.code === 'EPERM' ? ' (permission denied: run as the user that owns the state folder and config)' : ''}`, exitCode: EXIT.no };
  }
  return { message: `unexpected error: ${err instanceof Error ? err.message : String(err)}`, exitCode: EXIT.internal };
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const { message, exitCode } = report(err);
    process.stderr.write(`gatehouse: ${message.replace(/\n?$/, '\n')}`);
    process.exitCode = exitCode;
  },
);
