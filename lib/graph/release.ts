/**
 * Early release of a forward's intermediate tensors (DESIGN.md §5 "Memory").
 *
 * Why: the ops' outputs live in native memory that V8 counts towards its next major GC. A tinyDit
 * forward at 1024 tokens produces about 100 MiB of intermediates; left to the collector, that is a
 * full mark-compact per forward, and with the compute threads on every core each one held the
 * JavaScript thread for 5-15 ms. A container that knows an intermediate is dead frees it at once
 * (the block goes back to the native pool, and V8 stops counting it).
 *
 * An intermediate is dead when nothing outside the container can hold it. That is only known for
 * the library's own layers: a container releases intermediates only while every module in its
 * subtree is of a class declared here (exactly that class: a user's subclass may keep its inputs)
 * and none has a forward hook (a hook sees the intermediates and may keep them). Anything sharing
 * storage with a tensor that lives on (the container's output) is never released.
 */
import { native } from '../native.js';
import type { Tensor } from '../tensor.js';
import { moduleStructureVersion, type Module } from './module.js';

// Classes whose forward neither keeps its inputs nor returns them (or views of them).
const RELEASE_SAFE = new Set<abstract new (...args: never[]) => Module>();

/** Declares `cls` (exactly this class, not its subclasses) safe for early release; for the library's own layers. */
export function declareReleaseSafe(cls: abstract new (...args: never[]) => Module): void {
  RELEASE_SAFE.add(cls);
}

// The answer per module, valid while the structure version is unchanged (a forward asks at every
// release point; walking a large model each time would cost more than the release saves).
const verdicts = new WeakMap<Module, { version: number; safe: boolean }>();

/** Whether `module`'s forward may free its intermediates now: every module in its subtree is declared safe and has no hook. */
export function mayReleaseIntermediates(module: Module): boolean {
  const version = moduleStructureVersion();
  const cached = verdicts.get(module);
  if (cached !== undefined && cached.version === version) return cached.safe;
  let safe = true;
  for (const m of module.modules()) {
    if (m.forwardHookCount > 0 || !RELEASE_SAFE.has(m.constructor as abstract new (...args: never[]) => Module)) {
      safe = false;
      break;
    }
  }
  verdicts.set(module, { version, safe });
  return safe;
}

/**
 * Frees the native storage of `dead` (the intermediates `owner`'s forward is done with) if
 * `owner` may release them, except tensors that share storage with one of `live`.
 */
export function releaseIntermediates(owner: Module, dead: readonly Tensor[], live: readonly Tensor[]): void {
  if (!mayReleaseIntermediates(owner)) return;
  // A disposed tensor has no storage left to keep or free (and its `data` throws).
  const kept = new Set<ArrayBufferLike>(live.filter((t) => !t.disposed).map((t) => t.data.buffer));
  for (const t of dead) {
    if (t.dtype === 'f32' && !t.disposed && !kept.has(t.data.buffer)) native().releaseF32(t.data as Float32Array);
  }
}
