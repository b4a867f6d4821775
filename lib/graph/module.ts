/**
 * Module: a node of the tensor graph (as PyTorch's nn.Module). A module owns named children in
 * registration order, computes `forward(...inputs)` asynchronously, and runs its forward hooks
 * after each `call(...)`. Layers look their children up by name at run time (never through fields
 * captured at construction), so that `setSubmodule` can swap a child for another module (for
 * example a Linear for a quantized wrapper) and the parent uses the new one.
 */
import { ArgumentError } from '../errors.js';
import { Tensor, checkNotDisposed } from '../tensor.js';

/**
 * Called after the module's forward with the inputs the module was called with (the same tensor
 * objects, in a fresh array per call) and the output it produced. A returned Promise is awaited
 * before the next hook runs and before `call` resolves.
 */
export type ForwardHook<M extends Module = Module> = (module: M, inputs: Tensor[], output: Tensor) => void | Promise<void>;

export interface HookHandle {
  /** Unregisters the hook; later calls do not run it. Calling remove() again does nothing. */
  remove(): void;
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

export abstract class Module {
  readonly #children = new Map<string, Module>();
  readonly #hooks = new Map<number, ForwardHook<any>>();
  #nextHookId = 0;

  /** The computation. Containers call their children through `call` so that the children's hooks run. */
  abstract forward(...inputs: Tensor[]): Promise<Tensor>;

  /** Runs forward, then the forward hooks in registration order; resolves to forward's output. */
  async call(...inputs: Tensor[]): Promise<Tensor> {
    inputs.forEach((t, i) => {
      if (t instanceof Tensor) checkNotDisposed(t, `inputs[${i}]`);
    });
    const seen = inputs.slice();
    const output = await this.forward(...inputs);
    if (this.#hooks.size > 0) {
      for (const hook of [...this.#hooks.values()]) await hook(this, seen.slice(), output);
    }
    return output;
  }

  /** Registers `hook` to run after every `call` of this module. */
  registerForwardHook(hook: ForwardHook<this>): HookHandle {
    if (typeof hook !== 'function') throw new ArgumentError('hook', 'a function (module, inputs, output) => void | Promise<void>', hook);
    const id = this.#nextHookId++;
    this.#hooks.set(id, hook);
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
