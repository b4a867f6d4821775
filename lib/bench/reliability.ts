/**
 * Detecting unreliable benchmark runs (issue 17 item 7). A shared machine, a VM that moves, a
 * background job: any of them can make a figure wrong in either direction. Every benchmark checks
 * its own figures with these rules and attaches the flags to the record (JSON) and to the printed
 * value, so that a suspect figure is never printed as a plain result.
 */

/** Why a figure is suspect. */
export type Flag =
  | 'spread' // the repetitions disagree: (q3 − q1) / median above SPREAD_LIMIT
  | 'over-peak' // faster than the peak measured in the same run
  | 'over-dram' // more bytes per second than the DRAM bandwidth measured in the same run
  | 'low-peak' // this run's peak is far below the machine's usual (fractions against it are inflated)
  | 'peak-drift' // the peaks at the start and the end of the run disagree (the machine changed)
  | 'negative-overhead' // the rank-32 branch measured faster than rank 0
  | 'api-above-kernel' // the public API measured faster than the kernel alone
  | 'loaded-floor' // the idle baseline of the same run is itself disturbed (bench/event-loop.ts)
  | 'loaded-machine'; // a single-run timing taken while the load average exceeded the CPUs

export const FLAG_TEXT: Record<Flag, string> = {
  spread: 'the repetitions disagree by more than 15% (interquartile range over the median)',
  'over-peak': "above the machine's peak measured in this run",
  'over-dram': 'above the DRAM bandwidth measured in this run',
  'low-peak': "this run's peak is below 80% of the machine's usual (from earlier runs): a loaded machine",
  'peak-drift': 'the peaks measured at the start and the end of the run differ by more than 15%',
  'negative-overhead': 'the low-rank branch measured faster than rank 0',
  'api-above-kernel': 'the public API measured more than 10% faster than the kernel alone',
  'loaded-floor': "the idle event loop's own p99 gap in this run exceeds 2 ms: other work is delaying the timer",
  'loaded-machine': 'a single timed run during which the 1-minute load average exceeded the logical CPUs',
};

/** Above this (q3 − q1) / median the repetitions of one figure are too far apart. */
export const SPREAD_LIMIT = 0.15;
/** A run's peak below this fraction of the usual one is flagged. */
export const LOW_PEAK = 0.8;
/** Start and end peaks further apart than this (relative) are flagged. */
export const DRIFT_LIMIT = 0.15;
/** An API time this much below the kernel's (relative throughput above 1 + this) is flagged. */
export const API_SLACK = 0.1;

function quantile(sorted: readonly number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return quantile(sorted, 0.5);
}

/** (q3 − q1) / median of the repetitions (0 for fewer than 3). */
export function spread(values: readonly number[]): number {
  if (values.length < 3) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = quantile(sorted, 0.5);
  return mid > 0 ? (quantile(sorted, 0.75) - quantile(sorted, 0.25)) / mid : 0;
}

/** Collects the flags of one record, without duplicates, in a fixed order. */
export class Flags {
  readonly #set = new Set<Flag>();

  add(flag: Flag, when = true): this {
    if (when) this.#set.add(flag);
    return this;
  }

  /** 'spread' when any of the series' repetitions are too far apart. */
  spread(...series: ReadonlyArray<readonly number[]>): this {
    return this.add('spread', series.some((s) => spread(s) > SPREAD_LIMIT));
  }

  list(): Flag[] {
    return (Object.keys(FLAG_TEXT) as Flag[]).filter((f) => this.#set.has(f));
  }
}

/**
 * Flags of a figure timed once (too slow to repeat, so no spread can be seen): 'loaded-machine' when
 * the 1-minute load average at its start or end (`loads`) exceeds the logical CPUs.
 */
export function singleRunFlags(loads: readonly number[], cpus: number): Flag[] {
  return new Flags().add('loaded-machine', loads.some((l) => l > cpus)).list();
}

/** A value as printed: with a trailing '!' when its record is flagged. */
export function marked(text: string, flags: readonly Flag[] | undefined): string {
  return text === '' || flags === undefined || flags.length === 0 ? text : `${text}!`;
}

/** The legend for the flags that occur in `records` (empty when none do). */
export function flagLegend(records: ReadonlyArray<{ flags?: readonly Flag[] }>): Array<[Flag, string]> {
  const seen = new Set<Flag>();
  for (const r of records) for (const f of r.flags ?? []) seen.add(f);
  return (Object.keys(FLAG_TEXT) as Flag[]).filter((f) => seen.has(f)).map((f) => [f, FLAG_TEXT[f]]);
}
