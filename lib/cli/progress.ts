/**
 * Progress and chatter of long-running commands, on stderr (stdout stays for results, so
 * `--json > file` works): a bar redrawn in place on a terminal, plain lines otherwise (logs, CI,
 * pipes). `--quiet` silences both; `--verbose` adds detail lines.
 */
import type { CliIo } from './command.js';

export type Verbosity = 'quiet' | 'normal' | 'verbose';

/** The verbosity from the --quiet / --verbose flags (both given: a usage error upstream). */
export function verbosityOf(values: Record<string, unknown>): Verbosity {
  return values.quiet === true ? 'quiet' : values.verbose === true ? 'verbose' : 'normal';
}

export class Progress {
  readonly #io: CliIo;
  readonly #level: Verbosity;
  readonly #command: string;
  readonly #t0 = performance.now();
  #barShown = false;

  constructor(io: CliIo, level: Verbosity, command: string) {
    this.#io = io;
    this.#level = level;
    this.#command = command;
  }

  /** Seconds since the command started. */
  get elapsed(): number {
    return (performance.now() - this.#t0) / 1000;
  }

  #clearBar(): void {
    if (this.#barShown) {
      this.#io.stderr('\r\x1b[2K');
      this.#barShown = false;
    }
  }

  /** A status line (normal and verbose). */
  info(text: string): void {
    if (this.#level === 'quiet') return;
    this.#clearBar();
    this.#io.stderr(`${this.#command}: ${text}\n`);
  }

  /** A detail line (verbose only). */
  detail(text: string): void {
    if (this.#level !== 'verbose') return;
    this.#clearBar();
    this.#io.stderr(`${this.#command}:   ${text}\n`);
  }

  /**
   * Step `done` of `total` with a label. On a terminal: one bar redrawn in place. Otherwise one line
   * per call with `final` (so logs get one line per finished item, not per stage).
   */
  step(done: number, total: number, label: string, final: boolean): void {
    if (this.#level === 'quiet') return;
    if (this.#io.stderrIsTTY === true) {
      const width = 24;
      const filled = total > 0 ? Math.round((width * done) / total) : width;
      const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
      this.#io.stderr(`\r\x1b[2K${this.#command}: [${bar}] ${done}/${total} ${label} ${this.elapsed.toFixed(1)} s`);
      this.#barShown = true;
      if (final && done === total) this.#clearBar();
    } else if (final) {
      this.#io.stderr(`${this.#command}: [${done}/${total}] ${label} (${this.elapsed.toFixed(1)} s)\n`);
    }
  }

  /** Ends a bar left on screen (before printing results). */
  end(): void {
    this.#clearBar();
  }
}
