/**
 * Memory scopes of a forward (DESIGN.md §5 "Memory", §10): the native storage of intermediates is
 * freed as soon as the module that made them returns, without any bookkeeping in model code.
 *
 * Why: op outputs live in native memory that V8 counts towards its next major GC. A diffusion
 * transformer's forward makes hundreds of intermediates (tens of MiB each at Flux size); left to
 * the collector, they pile up and each major GC holds the JavaScript thread for milliseconds.
 *
 * How: every op output is tracked by the scope it was made in (`trackTensor`). `Module.call` runs
 * each forward in a scope of its own; when the forward returns, the tensors tracked there that do
 * not share storage with the returned value are freed, and the returned ones move up to the
 * caller's scope. The release happens only where it is known to be safe (`mayRelease`: see
 * release.ts): nothing is freed that a forward hook or a user's module could still hold. A model
 * that keeps a tensor made during a forward (a cache) calls `keep(t)`. `chain` runs a list of
 * blocks on a running state and frees each intermediate state once the next block has consumed it;
 * `withScope(fn)` gives code outside modules (a sampling loop) the same release.
 *
 * While a releasable scope tracks a tensor, V8 does not count its native storage towards its
 * garbage-collection triggers (`setScoped`): V8 charges every rise of external memory against an
 * old-generation budget of a few MiB for a small JavaScript heap, so the intermediates of each
 * block, freed by the scope a moment later anyway, started a major GC every few ops (DiT-XL/2 w4a4:
 * 47-108 per forward, 20-58% of its time). Tensors that leave the scopes (a forward's result, `keep`)
 * count again, so that dropped outputs still drive the collector.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { loadedNative } from '../native.js';
import { Tensor } from '../tensor.js';

class Scope {
  readonly tracked = new Set<Tensor>();
  constructor(readonly parent: Scope | undefined, readonly releasable: boolean) {}
}

const current = new AsyncLocalStorage<Scope>();

/** Adds a freshly made tensor (an op's output) to the current scope, if any; returns it. */
export function trackTensor<T extends Tensor>(t: T): T {
  const scope = current.getStore();
  if (scope !== undefined) {
    scope.tracked.add(t);
    if (scope.releasable) setScoped(t, true);
  }
  return t;
}

/** Hides native storage that a scope will free from V8's GC triggers, or shows it again. */
function setScoped(t: Tensor, scoped: boolean): void {
  if (t.disposed) return;
  const data = t.data;
  // As Tensor.dispose: the addon itself leaves alone any array that is not a whole pool block.
  if (data instanceof Float32Array && data.byteLength > 0) loadedNative()?.setF32Scoped(data, scoped);
}

/** Every Tensor in `value`: itself, or inside arrays and plain objects (a few levels deep). */
export function tensorsIn(value: unknown, out: Tensor[] = [], depth = 0): Tensor[] {
  if (value instanceof Tensor) out.push(value);
  else if (depth < 4 && Array.isArray(value)) for (const v of value) tensorsIn(v, out, depth + 1);
  else if (depth < 4 && value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) tensorsIn(v, out, depth + 1);
  }
  return out;
}

// A tensor disposed already (by model code, or as a view of a freed one) has no storage left to keep
// or free, and its `data` throws: every walk below skips it.
function storageOf(tensors: readonly Tensor[]): Set<ArrayBufferLike> {
  return new Set(tensors.filter((t) => !t.disposed).map((t) => t.data.buffer));
}

/**
 * Removes the tensors in `value` from every enclosing scope, so that they outlive the forward that
 * made them (a module's cache, a value kept across calls). Returns `value`.
 */
export function keep<T>(value: T): T {
  const tensors = tensorsIn(value);
  for (let s = current.getStore(); s !== undefined; s = s.parent) for (const t of tensors) s.tracked.delete(t);
  for (const t of tensors) setScoped(t, false);
  return value;
}

function close(scope: Scope, result: unknown): void {
  const live = storageOf(tensorsIn(result));
  const parent = scope.parent;
  for (const t of scope.tracked) {
    if (t.disposed) continue;
    if (live.has(t.data.buffer)) {
      parent?.tracked.add(t);
      // Leaving the releasable scopes: the collector (or the caller's dispose) frees it now.
      if (scope.releasable && parent?.releasable !== true) setScoped(t, false);
    } else if (scope.releasable) {
      t.dispose();
    }
  }
  scope.tracked.clear();
}

/**
 * Runs `fn` in a new scope: afterwards the tensors made inside that are not part of its result are
 * freed (when `releasable`), the others move to the enclosing scope. On an error everything made
 * inside is dead and freed likewise.
 */
export async function runInScope<T>(releasable: boolean, fn: () => Promise<T>): Promise<T> {
  const scope = new Scope(current.getStore(), releasable);
  let result: T;
  try {
    result = await current.run(scope, fn);
  } catch (error) {
    close(scope, undefined);
    throw error;
  }
  close(scope, result);
  return result;
}

/**
 * Runs `fn` (for example one step of a sampling loop) and frees the native storage of every op
 * output made inside it that is not part of its result, like TensorFlow.js's `tidy`. The result
 * belongs to the caller (or to the enclosing scope).
 */
export function withScope<T>(fn: () => Promise<T>): Promise<T> {
  return runInScope(true, fn);
}

/**
 * Runs `step` for each item on a running state, as `for (const b of blocks) state = await step(b,
 * state)`, and frees each state that a step made once the next step has consumed it (the state
 * passed in is never freed: the caller may still use it). For transformer blocks: one hidden state
 * lives at a time instead of one per block. A step must not keep its input state.
 */
export async function chain<M, S>(items: Iterable<M>, state: S, step: (item: M, state: S) => Promise<S>): Promise<S> {
  const scope = current.getStore();
  const initial = storageOf(tensorsIn(state));
  let value = state;
  for (const item of items) {
    const next = await step(item, value);
    if (scope !== undefined && scope.releasable) {
      const live = storageOf(tensorsIn(next));
      for (const t of tensorsIn(value)) {
        if (scope.tracked.has(t) && !t.disposed && !live.has(t.data.buffer) && !initial.has(t.data.buffer)) {
          scope.tracked.delete(t);
          t.dispose();
        }
      }
    }
    value = next;
  }
  return value;
}
