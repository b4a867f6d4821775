/**
 * When a forward's intermediates may be freed early (DESIGN.md §5 "Memory"; the mechanism is
 * scope.ts).
 *
 * Why: the ops' outputs live in native memory that V8 counts towards its next major GC. A tinyDit
 * forward at 1024 tokens produces about 100 MiB of intermediates; left to the collector, that is a
 * full mark-compact per forward, and with the compute threads on every core each one held the
 * JavaScript thread for 5-15 ms. Freed at once, the block goes back to the native pool and V8
 * stops counting it.
 *
 * An intermediate is dead when nothing outside the module's forward can hold it. That is only
 * known for the library's own modules: a module's scope frees intermediates only while every module
 * in its subtree is of a class declared here (exactly that class: a user's subclass may keep its
 * inputs) and none has a forward hook that may keep tensors (a hook registered with
 * `retainsTensors: false` only reads them). Anything sharing storage with the module's output is
 * never freed.
 */
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

/** Whether `module`'s forward may free its intermediates now: every module in its subtree is declared safe and has no hook that may keep tensors. */
export function mayReleaseIntermediates(module: Module): boolean {
  const version = moduleStructureVersion();
  const cached = verdicts.get(module);
  if (cached !== undefined && cached.version === version) return cached.safe;
  let safe = true;
  for (const m of module.modules()) {
    if (m.retainingHookCount > 0 || !RELEASE_SAFE.has(m.constructor as abstract new (...args: never[]) => Module)) {
      safe = false;
      break;
    }
  }
  verdicts.set(module, { version, safe });
  return safe;
}
