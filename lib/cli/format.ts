/** Text helpers for human-readable CLI output. */
import { availableParallelism, cpus, loadavg } from 'node:os';

const UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** `512 B`, `1.5 KiB`, `3.0 GiB` (binary units). */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${UNITS[unit]}`;
}

/** Integer with thousands separators: 1234567 -> `1,234,567`. */
export function formatCount(count: number): string {
  return String(count).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** Text from a file, safe to print in a table: JSON-quoted if it holds control characters. */
export function displayText(text: string): string {
  return /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(text) ? JSON.stringify(text) : text;
}

/** Rows of cells as left-aligned columns separated by two spaces (trailing spaces trimmed). */
export function formatTable(rows: ReadonlyArray<ReadonlyArray<string>>, indent = ''): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => indent + row.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd() + '\n').join('');
}

/**
 * What a run's timings depend on: the CPU, how many CPUs the process may use, and the system's load
 * averages (1, 5, 15 minutes) when the run started and ended. On a shared machine every time
 * stretches with the load; errors and sizes do not.
 */
export interface MachineInfo { cpu: string; cpus: number; loadAverageStart: number[]; loadAverageEnd: number[] }

/** Starts a MachineInfo record; call the returned function at the end of the run. */
export function machineInfoStart(): () => MachineInfo {
  const loadAverageStart = loadavg();
  return () => ({ cpu: cpus()[0]?.model?.trim() ?? 'unknown', cpus: availableParallelism(), loadAverageStart, loadAverageEnd: loadavg() });
}

export function formatMachine(mc: MachineInfo): string {
  const load = (l: number[]): string => l.map((v) => v.toFixed(2)).join(' ');
  return `machine: ${mc.cpu}, ${mc.cpus} CPUs; load average ${load(mc.loadAverageStart)} at the start, ${load(mc.loadAverageEnd)} at the end.\n` +
    'Times depend on this machine and its load (other processes stretch them); errors and sizes do not.\n';
}
