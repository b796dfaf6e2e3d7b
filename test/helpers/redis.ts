/*
 * A private redis-server for tests (Debian `redis-server`): a free loopback port, a throwaway folder, no
 * persistence; stopped by `stop()` (call it in afterAll). `enabled` is false when redis-server is not installed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../smtp/listener-client.js';

export const redisInstalled = spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;

export class TestRedis {
  private proc: ChildProcess | null = null;
  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  static async start(): Promise<TestRedis> {
    const r = new TestRedis(await freePort(), fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-redis-')));
    await r.resume();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  /** (Re)start the server on the same port. */
  async resume(): Promise<void> {
    this.proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, '--daemonize', 'no'], { stdio: 'ignore' });
    const until = Date.now() + 10_000;
    while (Date.now() < until) {
      if (spawnSync('redis-cli', ['-p', String(this.port), 'ping'], { encoding: 'utf8' }).stdout.trim() === 'PONG') return;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error('redis-server did not start');
  }

  /** Stop the server (the folder stays until `cleanup`). */
  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (!p || p.exitCode !== null) return;
    const gone = new Promise((res) => p.once('exit', res));
    p.kill('SIGTERM');
    await Promise.race([gone, new Promise((res) => setTimeout(res, 5000))]);
    if (p.exitCode === null) p.kill('SIGKILL');
  }

  async cleanup(): Promise<void> {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
