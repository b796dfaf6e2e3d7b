/*
 * Start a real Gatehouse in-process on loopback, on ports the OS picks, with its own temporary state
 * folder. Every test file that uses it must call `stop()` in afterAll.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { Gatehouse } from '../../src/gatehouse.js';
import { UserStore } from '../../src/identity/users.js';
import type { DecisionRecord } from '../../src/policy/audit.js';

export interface TestGatehouse {
  readonly gh: Gatehouse;
  readonly dir: string;
  readonly configFile: string;
  readonly decisions: DecisionRecord[];
  port(service: 'smtp' | 'ftp' | 'nntp', name?: string): number;
  stop(): Promise<void>;
}

export type Overrides = Record<string, unknown>;

function merge(base: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(extra)) {
    const b = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b) ? merge(b as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

/** A passive range unlikely to collide between parallel test files. */
export function randomPassiveRange(width = 40): string {
  const lo = 20_000 + Math.floor(Math.random() * 400) * 100;
  return `${lo}-${lo + width - 1}`;
}

export interface TestUser {
  readonly name: string;
  readonly password: string;
  readonly groups?: readonly string[];
}

export const PASSWORD = 'correct-horse-battery';

/**
 * Build a temp dir with config/gatehouse.yaml (+ users.yaml), start Gatehouse with every listener on
 * 127.0.0.1:0. `overrides` is merged into the config (objects deep, arrays replaced).
 */
export async function startGatehouse(overrides: Overrides = {}, users: readonly TestUser[] = []): Promise<TestGatehouse> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-test-'));
  const configDir = path.join(dir, 'config');
  fs.mkdirSync(configDir);
  const base: Record<string, unknown> = {
    hostname: 'gatehouse.test',
    state_dir: '../var',
    auth: { bcrypt_cost: 10 },
    log: { stdout: false, level: 'info' },
    smtp: { listen: '127.0.0.1:0' },
    ftp: { listen: '127.0.0.1:0', passive: { ports: randomPassiveRange() } },
    nntp: { listen: '127.0.0.1:0' },
  };
  const data = merge(base, overrides);
  const configFile = path.join(configDir, 'gatehouse.yaml');
  fs.writeFileSync(configFile, stringify(data));
  const config = parseConfig(data, configFile, configDir);
  if (users.length > 0) {
    const store = new UserStore(config.paths.usersFile, 10);
    for (const u of users) await store.add(u.name, u.password, u.groups ?? []);
  }
  const gh = await Gatehouse.create({ configFile, stdout: false });
  const decisions: DecisionRecord[] = [];
  gh.runtime.logging.subscribe((r) => decisions.push(r));
  await gh.start();
  return {
    gh,
    dir,
    configFile,
    decisions,
    port: (service, name) => gh.port(service, name),
    async stop() {
      await gh.stop(1000);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
