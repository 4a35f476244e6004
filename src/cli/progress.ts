/**
 * A one-line progress bar on stderr, drawn only when stderr is a terminal
 * (never in CI logs or pipes), redrawn at most every 100 ms.
 */
export class Progress {
  private last = 0;
  private readonly started = Date.now();
  private readonly enabled: boolean;

  constructor(private readonly label: string, private total: number, enabled = process.stderr.isTTY === true) {
    this.enabled = enabled;
  }

  /** The total, when it is known only once the work has started. */
  setTotal(total: number): void {
    this.total = total;
  }

  update(done: number, rows: number, force = false): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 0;
    const width = 30;
    const filled = Math.round(frac * width);
    const secs = (now - this.started) / 1000;
    const rate = secs > 0 ? rows / secs : 0;
    const eta = frac > 0 && frac < 1 ? ` eta ${Math.ceil(secs / frac - secs)}s` : '';
    process.stderr.write(`\r${this.label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(frac * 100).toFixed(1)}% ${rows.toLocaleString('en-US')} rows ${Math.round(rate).toLocaleString('en-US')}/s${eta}   `);
  }

  done(): void {
    if (this.enabled) process.stderr.write('\n');
  }
}
