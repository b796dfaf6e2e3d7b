/**
 * RotatingFile batches the lines of one event-loop turn into one write(2), rotates between lines exactly as a
 * write per line would, and loses nothing when the process exits before the loop turns again. With a coalescing
 * window (the decision log), deferrable lines that follow a write closely share one write at the window's end;
 * any other line ends the wait.
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

  it('with coalesceMs, deferrable lines inside the window after a write share one write at its end; after a quiet window a turn writes at once', async () => {
    const file = path.join(dir, 'coalesce.log');
    const windowMs = 300;
    const rf = new RotatingFile(file, 1 << 20, 3, windowMs);
    const spy = vi.spyOn(fs, 'writeSync');
    const read = () => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '');
    try {
      rf.write('first\n', true);
      await turn();
      expect(spy).toHaveBeenCalledTimes(1); // nothing written lately: at the end of the turn, as without a window
      const t0 = performance.now();
      rf.write('second\n', true);
      await turn();
      rf.write('third\n', true);
      await turn();
      expect(spy).toHaveBeenCalledTimes(1); // inside the window: held
      expect(read()).toBe('first\n');
      const deadline = Date.now() + 10_000;
      while (spy.mock.calls.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(spy).toHaveBeenCalledTimes(2); // both in one write, at the window's end
      expect(performance.now() - t0).toBeGreaterThanOrEqual(windowMs - 50);
      expect(read()).toBe('first\nsecond\nthird\n');
      await new Promise((r) => setTimeout(r, windowMs + 50));
      rf.write('after a quiet window\n', true);
      await turn();
      expect(spy).toHaveBeenCalledTimes(3);
      rf.write('held\n', true);
      await turn();
      expect(spy).toHaveBeenCalledTimes(3);
      rf.write('not deferrable\n'); // ends the wait: both leave at the end of this turn, in order
      await turn();
      expect(spy).toHaveBeenCalledTimes(4);
      expect(read()).toBe('first\nsecond\nthird\nafter a quiet window\nheld\nnot deferrable\n');
      rf.write('right after, not deferrable\n'); // a window never holds such a line
      await turn();
      expect(spy).toHaveBeenCalledTimes(5);
      rf.write('held again\n', true);
      rf.close(); // close flushes what a window holds
      expect(spy).toHaveBeenCalledTimes(6);
    } finally {
      spy.mockRestore();
      rf.close();
    }
    expect(read()).toBe('first\nsecond\nthird\nafter a quiet window\nheld\nnot deferrable\nright after, not deferrable\nheld again\n');
  });

  it('with coalesceMs, a window holds at most 1,000 lines: the next leave at the end of the turn', async () => {
    const file = path.join(dir, 'coalesce-full.log');
    const rf = new RotatingFile(file, 1 << 20, 3, 60_000);
    const spy = vi.spyOn(fs, 'writeSync');
    try {
      rf.write('opens the window\n', true);
      await turn();
      for (let i = 0; i < 1000; i++) rf.write(`line ${i}\n`, true);
      await turn();
      expect(spy).toHaveBeenCalledTimes(2); // not a minute later
    } finally {
      spy.mockRestore();
      rf.close();
    }
    expect(fs.readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(1001);
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
