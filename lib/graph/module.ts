/**
 * Module: a node of the tensor graph (as PyTorch's nn.Module). A module owns named children and
 * named parameters in registration order, computes `forward(...args)` asynchronously, and runs its
 * forward hooks after each `call(...)`. A forward may take tensors, named inputs (an object of
 * tensors and options, as a diffusers model's keyword arguments) and plain values, and may return a
 * tensor or several (an array or an object). Layers look their children up by name at run time
 * (never through fields captured at construction), so that `setSubmodule` can swap a child for
 * another module (for example a Linear for a quantized wrapper) and the parent uses the new one.
 *
 * Memory: each `call` runs the forward in a scope (scope.ts) that frees the intermediates the
 * forward made once it returns, where that is safe (release.ts); model code does no bookkeeping.
 */
import { ArgumentError } from '../errors.js';
import { Tensor, checkNotDisposed } from '../tensor.js';
import { runInScope, tensorsIn } from './scope.js';
import { mayReleaseIntermediates } from './release.js';

/**
 * Called after the module's forward with the arguments the module was called with (the same
 * objects, in a fresh array per call) and the output it produced. A returned Promise is awaited
 * before the next hook runs and before `call` resolves. For a single-tensor layer (Linear),
 * `inputs[0]` is the input tensor.
 */
export type ForwardHook<M extends Module = Module> = (module: M, inputs: any[], output: any) => void | Promise<void>;

export interface HookHandle {
  /** Unregisters the hook; later calls do not run it. Calling remove() again does nothing. */
  remove(): void;
}

export interface ForwardHookOptions {
  /**
   * Whether the hook may keep the tensors it is shown beyond its own run (default true). A hook
   * that only reads them (statistics, a copy) passes false, so that the intermediates of the
   * modules around it are still freed early.
   */
  retainsTensors?: boolean;
}

const NAME_RE = /^[A-Za-z0-9_]+$/;

// Bumped by every change of any module's children or hooks, so that facts derived from a subtree
// (release.ts) can be cached until the graph changes.
let structureVersion = 0;

/** The current structure version (internal: changes whenever children or hooks change anywhere). */
export function moduleStructureVersion(): number {
  return structureVersion;
}

function checkChildName(name: unknown, argument: string): string {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new ArgumentError(argument, 'a non-empty child name of letters, digits and underscores (no dots)', name);
  }
  return name;
}

/** A parameter or buffer slot: the tensor (null for an absent optional parameter) and, for buffers, whether it is saved. */
interface Slot {
  tensor: Tensor | null;
  buffer: boolean;
  persistent: boolean;
}

export abstract class Module<Args extends unknown[] = any[], Out = any> {
  readonly #children = new Map<string, Module>();
  readonly #slots = new Map<string, Slot>();
  readonly #hooks = new Map<number, { hook: ForwardHook<any>; retains: boolean }>();
  #nextHookId = 0;

  /** The computation. Containers call their children through `call` so that the children's hooks run. */
  abstract forward(...args: Args): Promise<Out>;

  /**
   * Runs forward in a memory scope (its intermediates are freed when it returns, where safe), then
   * the forward hooks in registration order; resolves to forward's output.
   */
  async call(...args: Args): Promise<Out> {
    args.forEach((a, i) => {
      for (const t of tensorsIn(a)) checkNotDisposed(t, `inputs[${i}]`);
    });
    const seen = args.slice();
    const output = await runInScope(mayReleaseIntermediates(this), () => this.forward(...args));
    if (this.#hooks.size > 0) {
      for (const { hook } of [...this.#hooks.values()]) await hook(this, seen.slice(), output);
    }
    return output;
  }

  /** Registers `hook` to run after every `call` of this module. */
  registerForwardHook(hook: ForwardHook<this>, options: ForwardHookOptions = {}): HookHandle {
    if (typeof hook !== 'function') throw new ArgumentError('hook', 'a function (module, inputs, output) => void | Promise<void>', hook);
    if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object { retainsTensors }', options);
    if (options.retainsTensors !== undefined && typeof options.retainsTensors !== 'boolean') {
      throw new ArgumentError('options.retainsTensors', 'a boolean', options.retainsTensors);
    }
    const id = this.#nextHookId++;
    this.#hooks.set(id, { hook, retains: options.retainsTensors !== false });
    structureVersion++;
    return {
      remove: () => {
        if (this.#hooks.delete(id)) structureVersion++;
      },
    };
  }

  /** Number of forward hooks registered now. */
  get forwardHookCount(): number {
    return this.#hooks.size;
  }

  /** Number of forward hooks registered now that may keep the tensors they see. */
  get retainingHookCount(): number {
    let n = 0;
    for (const h of this.#hooks.values()) if (h.retains) n++;
    return n;
  }

  /**
   * Declares the parameter `name` (a tensor, or null for an optional parameter that is absent, as
   * a Linear without bias). Parameters are what a state dict and a checkpoint hold, under the
   * module's dotted name plus `name` (diffusers' keys).
   */
  protected registerParameter(name: string, tensor: Tensor | null): void {
    checkChildName(name, 'name');
    if (tensor !== null && !(tensor instanceof Tensor)) throw new ArgumentError('tensor', 'a Tensor or null', tensor);
    this.#slots.set(name, { tensor, buffer: false, persistent: true });
  }

  /**
   * Declares the buffer `name`: a tensor the forward uses that is not learned (a position
   * embedding). A persistent buffer is part of the state dict (diffusers' `persistent=True`).
   */
  protected registerBuffer(name: string, tensor: Tensor, options: { persistent?: boolean } = {}): void {
    checkChildName(name, 'name');
    if (!(tensor instanceof Tensor)) throw new ArgumentError('tensor', 'a Tensor', tensor);
    this.#slots.set(name, { tensor, buffer: true, persistent: options.persistent !== false });
  }

  /** The parameter or buffer `name` of this module (null for an absent optional parameter). */
  protected slot(name: string): Tensor | null {
    const s = this.#slots.get(name);
    if (s === undefined) throw new ArgumentError('name', `a parameter of this ${this.constructor.name} (${[...this.#slots.keys()].join(', ') || 'it has none'})`, name);
    return s.tensor;
  }

  /** The parameter or buffer `name`, or null when it is absent or not declared. */
  protected optionalSlot(name: string): Tensor | null {
    return this.#slots.get(name)?.tensor ?? null;
  }

  /**
   * Replaces the parameter or buffer `name` by `tensor`: same shape as declared, f32 (f16 and bf16
   * are converted). Subclasses that derive data from a parameter (Linear's packed weights) learn of
   * the change through `parameterChanged`.
   */
  setParameter(name: string, tensor: Tensor): void {
    const s = this.#slots.get(name);
    if (s === undefined || s.tensor === null) {
      throw new ArgumentError('name', `a parameter of this ${this.constructor.name} (${[...this.#slots.entries()].filter(([, v]) => v.tensor !== null).map(([k]) => k).join(', ') || 'it has none'})`, name);
    }
    if (!(tensor instanceof Tensor) || !(tensor.dtype === 'f32' || tensor.dtype === 'f16' || tensor.dtype === 'bf16')
      || tensor.shape.join() !== s.tensor.shape.join() || tensor.ndim !== s.tensor.ndim) {
      throw new ArgumentError(name, `an f32, f16 or bf16 tensor of shape [${s.tensor.shape.join(', ')}]`, tensor instanceof Tensor ? tensor.toString() : tensor);
    }
    s.tensor = tensor.to('f32');
    this.parameterChanged(name);
  }

  /** Called after `setParameter(name, …)` replaced a tensor (default: nothing). */
  protected parameterChanged(_name: string): void {}

  /** [name, tensor] of this module's own parameters and buffers (not the children's); absent ones skipped. */
  *ownTensors(options: { buffers?: boolean; persistentOnly?: boolean } = {}): IterableIterator<[string, Tensor]> {
    for (const [name, s] of this.#slots) {
      if (s.tensor === null) continue;
      if (s.buffer && (options.buffers === false || (options.persistentOnly !== false && !s.persistent))) continue;
      yield [name, s.tensor];
    }
  }

  /**
   * [dottedName, tensor] of every parameter and persistent buffer of the tree (the state dict's
   * keys: `transformer_blocks.0.attn1.to_q.weight`), depth-first in registration order.
   */
  *namedParameters(prefix = ''): IterableIterator<[string, Tensor]> {
    for (const [path, m] of this.namedModules(prefix)) {
      for (const [name, t] of m.ownTensors()) yield [path === '' ? name : `${path}.${name}`, t];
    }
  }

  /** The parameters and persistent buffers as a Map (see namedParameters). */
  stateDict(): Map<string, Tensor> {
    return new Map(this.namedParameters());
  }

  /** Assigns the parameter or buffer at a dotted name (`blocks.0.norm.weight`) with setParameter's checks. */
  setParameterByPath(path: string, tensor: Tensor): void {
    if (typeof path !== 'string' || path === '') throw new ArgumentError('path', 'a dotted parameter name', path);
    const dot = path.lastIndexOf('.');
    const owner = this.getSubmodule(dot < 0 ? '' : path.slice(0, dot));
    owner.setParameter(path.slice(dot + 1), tensor);
  }

  /**
   * Adds (or, for an existing name, replaces in place, keeping its position) the child `name`.
   * Returns the module.
   */
  registerModule<M extends Module>(name: string, module: M): M {
    checkChildName(name, 'name');
    if (!(module instanceof Module)) throw new ArgumentError('module', 'a Module', module);
    for (const m of module.modules()) {
      if (m === this) throw new ArgumentError('module', 'a module that does not contain its new parent (no cycles)');
    }
    this.#children.set(name, module);
    structureVersion++;
    return module;
  }

  /** The child `name`; throws ArgumentError if there is none. */
  protected child(name: string): Module {
    const c = this.#children.get(name);
    if (c === undefined) throw new ArgumentError('name', `the name of a child of this ${this.constructor.name} (${this.#childList()})`, name);
    return c;
  }

  #childList(): string {
    return this.#children.size === 0 ? 'it has none' : `children: ${[...this.#children.keys()].join(', ')}`;
  }

  /** Whether the direct child `name` exists (optional parts of a module). */
  hasChild(name: string): boolean {
    return this.#children.has(name);
  }

  /** [name, child] for the direct children, in registration order. */
  *namedChildren(): IterableIterator<[string, Module]> {
    yield* [...this.#children.entries()];
  }

  /** The direct children in registration order. */
  *children(): IterableIterator<Module> {
    for (const [, c] of this.namedChildren()) yield c;
  }

  /**
   * [dottedName, module] for this module ('' or `prefix`) and every descendant, depth-first in
   * registration order. A module reachable along several paths is yielded once, under the first.
   */
  *namedModules(prefix = ''): IterableIterator<[string, Module]> {
    if (typeof prefix !== 'string') throw new ArgumentError('prefix', 'a string', prefix);
    const seen = new Set<Module>();
    const walk = function* (m: Module, name: string): Generator<[string, Module]> {
      if (seen.has(m)) return;
      seen.add(m);
      yield [name, m];
      for (const [childName, c] of m.namedChildren()) yield* walk(c, name === '' ? childName : `${name}.${childName}`);
    };
    yield* walk(this, prefix);
  }

  /** Every module of the tree (this one first), depth-first. */
  *modules(): IterableIterator<Module> {
    for (const [, m] of this.namedModules()) yield m;
  }

  /** The descendant at dotted path `name` ('' is this module). */
  getSubmodule(name: string): Module {
    if (typeof name !== 'string') throw new ArgumentError('name', 'a dotted module name (a string)', name);
    if (name === '') return this;
    let m: Module = this;
    let path = '';
    for (const segment of name.split('.')) {
      const c = m.#children.get(segment);
      if (c === undefined) {
        throw new ArgumentError('name', `a dotted path of existing submodules: ${path === '' ? 'the root' : `'${path}'`} has no child '${segment}' (${m.#childList()})`, name);
      }
      m = c;
      path = path === '' ? segment : `${path}.${segment}`;
    }
    return m;
  }

  /**
   * Puts `module` at dotted path `name`: the parent path must exist; the last segment replaces an
   * existing child in place, or with `{ strict: false }` may also add a new one. Returns the
   * module that was there before (undefined if none).
   */
  setSubmodule(name: string, module: Module, options: { strict?: boolean } = {}): Module | undefined {
    if (typeof name !== 'string' || name === '') throw new ArgumentError('name', 'a non-empty dotted module name', name);
    if (!(module instanceof Module)) throw new ArgumentError('module', 'a Module', module);
    const dot = name.lastIndexOf('.');
    const parentName = dot < 0 ? '' : name.slice(0, dot);
    const last = name.slice(dot + 1);
    const parent = this.getSubmodule(parentName);
    checkChildName(last, 'name');
    const previous = parent.#children.get(last);
    if (previous === undefined && options.strict !== false) {
      throw new ArgumentError('name', `a dotted path of existing submodules: ${parentName === '' ? 'the root' : `'${parentName}'`} has no child '${last}' (${parent.#childList()}; pass { strict: false } to add one)`, name);
    }
    parent.registerModule(last, module);
    return previous;
  }

  /** A one-line description: the class name and the children's names. */
  toString(): string {
    const names = [...this.#children.keys()];
    return names.length === 0 ? `${this.constructor.name}()` : `${this.constructor.name}(${names.join(', ')})`;
  }
}
