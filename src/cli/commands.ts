/*
 * The subcommand table. Each command is imported only when it runs, so `check` and `explain` never load
 * the listeners (smtp-server, ftp-srv, nntp-server, nodemailer), pino or prom-client: a CLI call costs
 * what its own command needs, not what `start` needs.
 */
export type Command = (args: string[], configFile: string | undefined) => Promise<number>;

export const COMMANDS: Record<string, Command> = {
  start: async (a, c) => (await import('./start.js')).startCommand(a, c),
  check: async (a, c) => (await import('./check.js')).checkCommand(a, c),
  config: async (a, c) => (await import('./config.js')).configCommand(a, c),
  explain: async (a, c) => (await import('./explain.js')).explainCommand(a, c),
  log: async (a, c) => (await import('./log.js')).logCommand(a, c),
  audit: async (a, c) => (await import('./audit.js')).auditCommand(a, c),
  user: async (a, c) => (await import('./user.js')).userCommand(a, c),
  queue: async (a, c) => (await import('./queue.js')).queueCommand(a, c),
  ftp: async (a, c) => (await import('./ftp.js')).ftpCommand(a, c),
  throttle: async (a, c) => (await import('./throttle.js')).throttleCommand(a, c),
  feed: async (a, c) => (await import('./feed.js')).feedCommand(a, c),
};

/** Each command's own usage, printed after a misuse of it (a command not listed gets the whole usage). */
const COMMAND_USAGE: Record<string, string> = {
  start: 'start [--quiet]',
  check: 'check [--quiet]',
  config: 'config show [--changed] [--json] [KEY…]',
  explain: 'explain --service smtp|ftp|nntp --ip ADDRESS [--user NAME|anonymous] [--tls] [--action ACTION [--object X]] [--stage STAGE] [--json]',
  audit: 'audit [--json] [--ftp-user NAME --password-stdin]',
  log: 'log [--follow] [--service smtp|ftp|nntp] [--verdict allow|deny] [--lines N] [--json]',
  user: 'user add NAME [--groups a,b] --password-stdin | passwd NAME --password-stdin | groups NAME (--set|--add|--remove) a,b | del NAME | list | unlock NAME|ADDRESS',
  queue: 'queue list [--json] | queue flush | queue delete ID',
};

export function commandUsage(name: string | undefined): string {
  const one = name === undefined ? undefined : COMMAND_USAGE[name];
  return one === undefined ? usage() : `usage: gatehouse [--config FILE] ${one}\n(gatehouse help: every command)`;
}

export function usage(): string {
  return `usage: gatehouse [--config FILE] COMMAND

commands:
  start                                   start the enabled listeners (SIGHUP reloads, SIGTERM stops)
  check                                   validate the config, then warn about every setting weaker than the default
  config show [--changed] [--json] [KEY…] print the effective config (defaults filled in; --changed: only what
                                          differs from the defaults, like postconf -n); secrets never printed
  explain --service S --ip A --action X   walk a session (connect, TLS, authenticate, action): the first stage
          [--user NAME|anonymous] [--tls]  that refuses, its rule and why; --stage S asks one stage alone
          [--object O] [--stage S] [--json]
  audit [--json] [--ftp-user NAME --password-stdin]
                                          probe the running instance from loopback; print a PASS/FAIL report card
  log [--follow] [--service S] [--verdict allow|deny] [--lines N] [--json]
                                          print the decision log (one line per decision); --follow tails it
  user add NAME [--groups a,b] --password-stdin
  user passwd NAME --password-stdin
  user groups NAME (--set a,b | --add a,b | --remove a,b)
  user del NAME | user list | user unlock NAME|ADDRESS
  user show NAME                          source, DN and FTP home; groups, familiar addresses (last login) and throttles
  throttle list | throttle clear ADDRESS|NAME
                                          login throttles; clear lifts one (user unlock is the same)
  ftp isolation isolated|directory|shared [--dry-run]
                                          change where FTP homes live; --dry-run shows what would move and who could reach it
  queue list | queue flush | queue delete ID
  feed list [--json] | feed flush         outgoing NNTP feeds: articles queued per peer; flush retries now

The config defaults to $GATEHOUSE_CONFIG or config/gatehouse.yaml; without a file the embedded (secure) defaults apply.
`;
}
