import { auditCommand } from './audit.js';
import { checkCommand } from './check.js';
import { configCommand } from './config.js';
import { explainCommand } from './explain.js';
import { ftpCommand } from './ftp.js';
import { logCommand } from './log.js';
import { queueCommand } from './queue.js';
import { startCommand } from './start.js';
import { throttleCommand } from './throttle.js';
import { userCommand } from './user.js';

export type Command = (args: string[], configFile: string | undefined) => Promise<number>;

export const COMMANDS: Record<string, Command> = {
  start: startCommand,
  check: checkCommand,
  config: configCommand,
  explain: explainCommand,
  log: logCommand,
  audit: auditCommand,
  user: userCommand,
  queue: queueCommand,
  ftp: ftpCommand,
  throttle: throttleCommand,
};

export function usage(): string {
  return `usage: gatehouse [--config FILE] COMMAND

commands:
  start                                   start the enabled listeners (SIGHUP reloads, SIGTERM stops)
  check                                   validate the config, then warn about every setting weaker than the default
  config show [--changed] [--json] [KEY…] print the effective config (defaults filled in; --changed: only what
                                          differs from the defaults, like postconf -n); secrets never printed
  explain --service S --ip A --action X   show the decision the policy core makes, and why
          [--user NAME|anonymous] [--tls] [--object O]
  audit [--json] [--ftp-user NAME --password-stdin]
                                          probe the running instance from loopback; print a PASS/FAIL report card
  log [--follow] [--service S] [--verdict allow|deny] [--lines N] [--json]
                                          print the decision log (one line per decision); --follow tails it
  user add NAME [--groups a,b] --password-stdin
  user passwd NAME --password-stdin
  user del NAME | user list | user unlock NAME|ADDRESS
  user show NAME                          source, DN and FTP home; groups, familiar addresses (last login) and throttles
  throttle list | throttle clear ADDRESS|NAME
                                          login throttles; clear lifts one (user unlock is the same)
  ftp isolation isolated|directory|shared [--dry-run]
                                          change where FTP homes live; --dry-run shows what would move and who could reach it
  queue list | queue flush | queue delete ID

The config defaults to $GATEHOUSE_CONFIG or config/gatehouse.yaml; without a file the embedded (secure) defaults apply.
`;
}
