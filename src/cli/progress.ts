// Progress on stderr (stdout carries only the command's result): a redrawn bar on a
// terminal, a few plain lines in logs and pipes, where carriage returns make a mess.
import { formatBytes } from './common.js';

export class Progress {
  private done = 0;
  private lastDraw = 0;
  private lastQuarter = -1;
  private readonly tty: boolean;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = out.isTTY === true;
    if (!this.tty) out.write(`${label}: ${formatBytes(total)}\n`);
  }

  add(n: number): void {
    this.done += n;
    const now = Date.now();
    if (this.tty) {
      if (now - this.lastDraw >= 100) this.draw();
      return;
    }
    const quarter = this.total > 0 ? Math.floor((this.done / this.total) * 4) : 0;
    if (quarter > this.lastQuarter && quarter < 4) {
      this.lastQuarter = quarter;
      if (quarter > 0) this.out.write(`${this.label}: ${quarter * 25}%\n`);
    }
  }

  finish(): void {
    if (this.tty) {
      this.done = Math.max(this.done, this.total);
      this.draw();
      this.out.write('\n');
    } else {
      this.out.write(`${this.label}: done (${formatBytes(this.done)})\n`);
    }
  }

  private draw(): void {
    this.lastDraw = Date.now();
    const frac = this.total > 0 ? Math.min(1, this.done / this.total) : 0;
    const width = 30;
    const filled = Math.round(frac * width);
    const bar = `${'#'.repeat(filled)}${'-'.repeat(width - filled)}`;
    this.out.write(`\r${this.label} [${bar}] ${String(Math.round(frac * 100)).padStart(3)}% ${formatBytes(this.done)} / ${formatBytes(this.total)}\x1b[K`);
  }
}
