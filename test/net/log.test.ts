/**
 * RotatingFile batches the lines of one event-loop turn into one write(2), rotates between lines exactly as a
 * write per line would, and loses nothing when the process exits before the loop turns again.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { RotatingFile } from '../../src/net/log.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-rotating-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const turn = () => new Promise((r) => setImmediate(r));

describe('RotatingFile', () => {
  it('writes the lines of one loop turn with one system call, in order', async () => {
    const file = path.join(dir, 'batch.log');
    const rf = new RotatingFile(file, 1 << 20, 3);
    const spy = vi.spyOn(fs, 'writeSync');
    try {
      for (let i = 0; i < 50; i++) rf.write(`line ${i}\n`);
      expect(fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '').toBe(''); // not yet: end of the turn
      await turn();
      expect(spy).toHaveBeenCalledTimes(1);
      rf.write('next turn\n');
      await turn();
      expect(spy).toHaveBeenCalledTimes(2);
    } finally {
      spy.mockRestore();
      rf.close();
    }
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    expect(lines).toEqual([...Array.from({ length: 50 }, (_, i) => `line ${i}`), 'next turn']);
  });

  it('rotates inside a batch where one write per line would have', async () => {
    const batched = path.join(dir, 'rot-batched.log');
    const single = path.join(dir, 'rot-single.log');
    const a = new RotatingFile(batched, 100, 3);
    const b = new RotatingFile(single, 100, 3);
    const lines = Array.from({ length: 12 }, (_, i) => `${String(i).padStart(2, '0')} ${'x'.repeat(i * 6)}\n`);
    for (const l of lines) a.write(l);
    await turn(); // one batch
    for (const l of lines) {
      b.write(l);
      await turn(); // one write per line (the old behaviour)
    }
    a.close();
    b.close();
    for (const suffix of ['', '.1', '.2', '.3']) {
      const x = fs.existsSync(batched + suffix) ? fs.readFileSync(batched + suffix, 'utf8') : null;
      const y = fs.existsSync(single + suffix) ? fs.readFileSync(single + suffix, 'utf8') : null;
      expect(x).toBe(y);
    }
    expect(fs.existsSync(`${batched}.3`)).toBe(true); // it did rotate, more than once
    expect(fs.existsSync(`${batched}.4`)).toBe(false); // and kept only `keep` generations
  });

  it('flushes on exit: a process that writes and exits at once keeps every line', () => {
    const file = path.join(dir, 'exit.log');
    const script = `
      import { RotatingFile } from ${JSON.stringify(path.resolve('src/net/log.ts'))};
      const rf = new RotatingFile(${JSON.stringify(file)}, 1 << 20, 3);
      for (let i = 0; i < 5; i++) rf.write('before exit ' + i + '\\n');
      process.exit(3);
    `;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(3);
    expect(fs.readFileSync(file, 'utf8').trim().split('\n')).toEqual(Array.from({ length: 5 }, (_, i) => `before exit ${i}`));
  });
});
