import { auditCommand } from './audit.js';
import { checkCommand } from './check.js';
import { configCommand } from './config.js';
import { explainCommand } from './explain.js';
import { feedCommand } from './feed.js';
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
  feed: feedCommand,
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
  user show NAME                          groups, familiar addresses (last login) and throttles of a user
  throttle list | throttle clear ADDRESS|NAME
                                          login throttles; clear lifts one (user unlock is the same)
  queue list | queue flush | queue delete ID
  feed list [--json] | feed flush         outgoing NNTP feeds: articles queued per peer; flush retries now

The config defaults to $GATEHOUSE_CONFIG or config/gatehouse.yaml; without a file the embedded (secure) defaults apply.
`;
}
