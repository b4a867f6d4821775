/** Options shared by `svdquant serve` and `svdquant worker`. */
import type { NativeBackend } from '../runtime/native-inference.js';
import { UsageError } from './command.js';

const BACKENDS = ['auto', 'cpu', 'cuda', 'hip', 'reference'] as const;

/** --backend: where a quantized checkpoint's layers run (default auto). */
export function backendOption(command: string, value: unknown): NativeBackend | 'reference' {
  if (value === undefined) return 'auto';
  if (!BACKENDS.includes(value as (typeof BACKENDS)[number])) {
    throw new UsageError(`${command}: --backend expects one of ${BACKENDS.join(', ')}, got ${JSON.stringify(String(value))}`);
  }
  return value as NativeBackend | 'reference';
}
