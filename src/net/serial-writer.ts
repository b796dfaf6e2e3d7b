/*
 * One durable file kept in step with in-memory state: `schedule()` marks it dirty and a write follows after
 * `debounceMs`; writes never overlap (one in flight, the next takes the newest snapshot), each is a temp file,
 * fsync, rename and folder fsync (net/atomic.ts), so a reader in another process sees the old file or the new
 * one, never half. `flush()` writes now if dirty and waits (stop, tests).
 */
import { writeFileDurable } from './atomic.js';

export class SerialWriter {
  private dirty = false;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly file: string,
    private readonly snapshot: () => string,
    private readonly onError: (err: unknown) => void,
    private readonly debounceMs = 250,
  ) {}

  schedule(): void {
    this.dirty = true;
    if (this.timer || this.running) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.run();
    }, this.debounceMs);
    this.timer.unref();
  }

  private async run(): Promise<void> {
    if (this.running) return this.running;
    this.running = (async () => {
      while (this.dirty) {
        this.dirty = false;
        try {
          await writeFileDurable(this.file, this.snapshot(), 0o600);
        } catch (err) {
          this.onError(err);
          break;
        }
      }
    })();
    try {
      await this.running;
    } finally {
      this.running = null;
    }
  }

  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.running) await this.running;
    if (this.dirty) await this.run();
  }
}
