/*
 * Gatehouse as operators run it, for the crash tests: `gatehouse start` (src/cli/main.ts under tsx) in a child
 * process with a config folder of its own. `writeConfigDir` writes config/gatehouse.yaml and the users;
 * `ChildGatehouses.start` resolves once the start-up banner is complete and every listener it names answers;
 * `kill9` waits (bounded) for the SIGKILL to take; `killAll` belongs in afterAll.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { UserStore } from '../../src/identity/users.js';
import type { TestUser } from './gatehouse.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');

export interface ConfigDir {
  /** The temporary folder holding config/ and var/; remove it in afterAll. */
  readonly dir: string;
  readonly configFile: string;
  readonly stateDir: string;
}

/** A temp folder with config/gatehouse.yaml (`state_dir` is ../var unless `data` says otherwise) and its users. */
export async function writeConfigDir(prefix: string, data: Record<string, unknown>, users: readonly TestUser[] = []): Promise<ConfigDir> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const configDir = path.join(dir, 'config');
  fs.mkdirSync(configDir);
  const configFile = path.join(configDir, 'gatehouse.yaml');
  const full = { state_dir: '../var', ...data };
  fs.writeFileSync(configFile, stringify(full));
  const config = parseConfig(full, configFile, configDir);
  const store = new UserStore(config.paths.usersFile, 10);
  for (const u of users) await store.add(u.name, u.password, u.groups ?? []);
  return { dir, configFile, stateDir: config.paths.stateDir };
}

export interface RunningGatehouse {
  readonly child: ChildProcess;
  /** The port the banner names for a service's first (plain) listener. */
  port(service: 'smtp' | 'ftp' | 'nntp'): number;
}

const BANNER_DONE = /\n {2}(?:No users yet|\d+ user\(s\) in)[^\n]*\n/;
const LISTENER = /^ {2}(SMTP|FTP|NNTP)\s+127\.0\.0\.1:(\d+)/gm;

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/** The first bytes a listener sends on 127.0.0.1:`port` (its greeting); rejects after 5 s without any. */
export function greeting(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.setTimeout(5000, () => s.destroy(new Error('no greeting')));
    s.once('data', (d) => {
      s.destroy();
      resolve(d.toString());
    });
    s.once('error', reject);
  });
}

export class ChildGatehouses {
  private readonly children = new Set<ChildProcess>();

  /** `gatehouse --config FILE start --quiet`; rejects with its stderr if the banner is not complete in `timeoutMs`. */
  async start(configFile: string, timeoutMs = 30_000): Promise<RunningGatehouse> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', '--config', configFile, 'start', '--quiet'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    const banner = await new Promise<string>((resolve, reject) => {
      let err = '';
      const timer = setTimeout(() => reject(new Error(`gatehouse: no complete banner in ${timeoutMs} ms: ${err}`)), timeoutMs);
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (d: string) => {
        err += d;
        if (BANNER_DONE.test(err)) {
          clearTimeout(timer);
          resolve(err);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`gatehouse exited (${code}): ${err}`));
      });
    });
    const ports = new Map<string, number>();
    for (const m of banner.matchAll(LISTENER)) if (!ports.has(m[1]!)) ports.set(m[1]!, Number(m[2]));
    for (const [service, port] of ports) if (!(await answers(port))) throw new Error(`gatehouse is up but ${service} on ${port} does not answer`);
    return {
      child,
      port(service) {
        const p = ports.get(service.toUpperCase());
        if (p === undefined) throw new Error(`the banner names no ${service} listener:\n${banner}`);
        return p;
      },
    };
  }

  /** SIGKILL and wait (at most 5 s) for the exit; throws if the process did not die of it. */
  async kill9(child: ChildProcess): Promise<void> {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGKILL');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    }
    if (child.signalCode !== 'SIGKILL') throw new Error(`gatehouse pid ${child.pid} was not killed by SIGKILL (exit ${child.exitCode}, signal ${child.signalCode})`);
  }

  killAll(): void {
    for (const c of this.children) c.kill('SIGKILL');
  }
}
