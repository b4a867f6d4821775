// Early release of intermediates (lib/graph/release.ts): the library's containers free the native
// storage of the tensors they are done with, but never one that a hook, a user's module or the
// caller can still hold, and never change a result.
import t from 'tap';
import { Tensor } from '../lib/tensor.js';
import { gelu, Linear, MLP, Module, Sequential, SelfAttention, LayerNorm } from '../lib/graph/index.js';
import { declareReleaseSafe, mayReleaseIntermediates } from '../lib/graph/release.js';
import { native } from '../lib/native.js';
import { randomTensor, rng } from './support/graph-reference.js';

/** Keeps every input it sees (as a user's caching module might) and returns a fresh copy. */
class KeepsInputs extends Module {
  readonly seen: Tensor[] = [];
  override async forward(x: Tensor): Promise<Tensor> {
    this.seen.push(x);
    return x.clone();
  }
}

/** The same, but (wrongly) declared safe: lets the tests see that release happens at all. */
class DeclaredSafeSpy extends KeepsInputs {}
declareReleaseSafe(DeclaredSafeSpy);

t.test('releaseF32 frees the arrays native ops allocated, and nothing else', async (t) => {
  const x = randomTensor([64, 32], 1, rng(1));
  const y = await gelu(x);
  t.equal(y.data.length, 64 * 32);
  t.equal(native().releaseF32((y.data as Float32Array).subarray(1)), false, 'a view of part of the buffer: left alone');
  t.equal(y.data.length, 64 * 32);
  const storage = y.data as Float32Array;
  t.equal(native().releaseF32(storage), true);
  t.equal(storage.length, 0, 'the buffer is detached');
  t.ok(y.disposed, 'the tensor over it counts as disposed');
  t.equal(native().releaseF32(storage), false, 'a second release does nothing');
  const own = new Float32Array([1, 2, 3]);
  t.equal(native().releaseF32(own), false, "a JavaScript-allocated array: left alone");
  t.same([...own], [1, 2, 3]);
  t.throws(() => native().releaseF32(new Uint8Array(4) as unknown as Float32Array), { code: 'ERR_SVDQ_ARGUMENT' });
});

t.test('a Sequential of library layers releases its intermediates', async (t) => {
  const spy = new DeclaredSafeSpy();
  const model = new Sequential(new Linear(16, 16, { seed: 1 }), spy, new Linear(16, 8, { seed: 2 }));
  t.ok(mayReleaseIntermediates(model));
  const x = randomTensor([4, 16], 1, rng(2));
  const y = await model.call(x);
  t.ok(spy.seen[0].disposed, "the first Linear's output was freed once the spy was done with it");
  t.equal(x.data.length, 64, 'the caller’s input is never released');
  t.equal(y.data.length, 32, 'nor the output');
});

t.test('nothing a hook or a user module can hold is released', async (t) => {
  const x = randomTensor([8, 16], 1, rng(3));
  // A user module (not declared safe) anywhere in the subtree: no release in this container.
  const keeper = new KeepsInputs();
  const model = new Sequential(new Linear(16, 16, { seed: 1 }), keeper, new Linear(16, 8, { seed: 2 }));
  t.notOk(mayReleaseIntermediates(model));
  await model.call(x);
  t.equal(keeper.seen[0].data.length, 8 * 16, 'the input the user module kept is intact');

  // A hook on a layer inside an MLP keeps that layer's output: it stays intact.
  const mlp = new MLP(16, 64, { seed: 5 });
  const kept: Tensor[] = [];
  const handle = mlp.getSubmodule('fc1').registerForwardHook((_m, _inputs, out) => void kept.push(out));
  t.notOk(mayReleaseIntermediates(mlp));
  await mlp.call(x);
  const fc1Alone = await (mlp.getSubmodule('fc1') as Linear).forward(x);
  t.same([...kept[0].data], [...fc1Alone.data], 'the hooked output still holds its values');
  handle.remove();
  t.ok(mayReleaseIntermediates(mlp), 'the verdict follows the hook’s removal');
  // A user module swapped in later also switches release off.
  mlp.setSubmodule('act', new KeepsInputs());
  t.notOk(mayReleaseIntermediates(mlp), 'the verdict follows setSubmodule');
  // A subclass of a library layer is not trusted either.
  class MyLinear extends Linear {}
  t.notOk(mayReleaseIntermediates(new Sequential(new MyLinear(4, 4))));
});

t.test('release changes no result: outputs equal those with release switched off by a hook', async (t) => {
  const build = () => {
    const m = new Sequential(new LayerNorm(32), new SelfAttention(32, 4, { seed: 7 }), new MLP(32, 128, { seed: 8 }), new Linear(32, 16, { seed: 9 }));
    return m;
  };
  const x = randomTensor([24, 32], 1, rng(4));
  const releasing = build();
  t.ok(mayReleaseIntermediates(releasing));
  const hooked = build();
  hooked.getSubmodule('1.to_q').registerForwardHook(() => undefined);
  hooked.getSubmodule('2.fc1').registerForwardHook(() => undefined);
  t.notOk(mayReleaseIntermediates(hooked));
  for (let i = 0; i < 3; i++) {
    const [a, b] = await Promise.all([releasing.call(x), hooked.call(x)]);
    t.same([...a.data], [...b.data], `forward ${i}: bit-identical`);
  }
});

t.test('scopes: a module frees what its forward made, keeps what it returns, and keep() / chain / withScope', async (t) => {
  const { add, gelu: g, withScope, keep, chain, ModuleList } = await import('../lib/index.js');
  const made: Tensor[] = [];
  class Block extends Module {
    cache: Tensor | undefined;
    override async forward(x: Tensor): Promise<Tensor> {
      const h = await g(x);
      made.push(h);
      this.cache ??= keep(await g(x));
      return add(h, x);
    }
  }
  declareReleaseSafe(Block);
  const x = randomTensor([8, 16], 1, rng(9));
  const block = new Block();
  const y = await block.call(x);
  t.ok(made[0].disposed, 'an intermediate is freed when the forward returns');
  t.notOk(y.disposed, 'the output lives');
  t.notOk(block.cache!.disposed, 'keep() exempts a cached tensor');
  t.notOk(x.disposed, "the caller's input lives");

  // chain: each intermediate state is freed once the next step consumed it; the first state never.
  class Stack extends Module {
    constructor() {
      super();
      this.registerModule('blocks', new ModuleList([new Block(), new Block(), new Block()]));
    }
    override async forward(x: Tensor): Promise<Tensor> {
      const first = await g(x);
      states.push(first);
      return (this.child('blocks') as InstanceType<typeof ModuleList>).chain(first, async (b, s) => {
        const next = await b.call(s);
        states.push(next);
        return next;
      });
    }
  }
  declareReleaseSafe(Stack);
  const states: Tensor[] = [];
  const out = await new Stack().call(x);
  t.same(states.map((s) => s.disposed), [true, true, true, false], 'intermediate states freed (the first at the end of the forward), the result kept');
  t.equal(states[3], out);

  // A hook that only reads (retainsTensors: false) keeps release on; one that may keep tensors turns it off.
  const seen: Tensor[] = [];
  const reading = new Block();
  const readHook = reading.registerForwardHook((_m, _i, o) => void seen.push(o), { retainsTensors: false });
  t.ok(mayReleaseIntermediates(reading));
  readHook.remove();
  reading.registerForwardHook(() => undefined);
  t.notOk(mayReleaseIntermediates(reading));

  // withScope frees every op output made inside except the result.
  let inner: Tensor | undefined;
  const kept = await withScope(async () => {
    inner = await g(x);
    return add(inner, 1);
  });
  t.ok(inner!.disposed && !kept.disposed, 'withScope');
  const viaChain = await chain([1, 2], x, async (n, s) => add(s, n));
  t.same([...viaChain.data], [...x.data].map((v) => Math.fround(Math.fround(v + 1) + 2)), 'chain outside a module: plain sequence');
});

t.test('scopes skip tensors the code disposed itself (their data throws since issue 18)', async (t) => {
  const { add, gelu: g, withScope, chain } = await import('../lib/index.js');
  const x = Tensor.fromArray([0.5, -1, 2, 3], [2, 2]);
  // An op output disposed inside the scope, and a disposed one returned as part of the result.
  let early: Tensor | undefined;
  const result = await withScope(async () => {
    early = await g(x);
    early.dispose();
    const gone = await add(x, 1);
    gone.dispose();
    return { out: await add(x, 2), gone };
  });
  t.ok(early!.disposed && result.gone.disposed && !result.out.disposed, 'no error, the live result kept');
  t.same([...result.out.data], [...x.data].map((v) => v + 2));
  // chain: a step that disposes the state it returned to the next step.
  const out = await withScope(() => chain([1, 2], x, async (n, s) => {
    const next = await add(s, n);
    if (n === 2) s.dispose();
    return next;
  }));
  t.same([...out.data], [...x.data].map((v) => v + 3), 'chain with a state disposed by its step');
});

t.test("V8 does not count the storage a scope will free towards its GCs, and counts what leaves the scopes", async (t) => {
  // Why this matters: V8 charges every rise of external memory against an old-generation budget of
  // a few MiB for a small JavaScript heap, so scoped intermediates used to start a major GC every
  // few ops (lib/graph/scope.ts). V8's own counter (the isolate's, which its triggers use) is checked.
  const { gelu: g, withScope, keep } = await import('../lib/index.js');
  const external = (): number => native().hostPoolStats().v8ExternalBytes;
  const n = 4 << 20; // 16 MiB of f32 per op output
  const bytes = 4 * n;
  const x = randomTensor([n / 1024, 1024], 1, rng(21));
  (await g(x)).dispose(); // settles the accounting of x's own buffer
  const slack = 2 << 20; // other small arrays the runtime may make meanwhile

  // Outside any scope an op's output is counted (dropped, the collector must know about it).
  let before = external();
  const loose = await g(x);
  t.ok(external() - before >= bytes - slack, `an output outside scopes is counted (+${external() - before} bytes)`);
  loose.dispose();
  t.ok(Math.abs(external() - before) < slack, 'and uncounted when disposed');

  before = external();
  let during = 0;
  let kept: Tensor | undefined;
  const result = await withScope(async () => {
    const a = await g(x);
    const b = await g(a);
    kept = keep(await g(b));
    during = external() - before;
    t.equal(native().hostPoolStats().scopedBytes, 2 * bytes, 'the pool knows which arrays are scoped');
    return g(b);
  });
  t.ok(during < bytes + slack, `inside a scope only the kept tensor is counted (+${during} bytes for 2 scoped outputs and 1 kept)`);
  t.ok(during >= bytes - slack, 'keep() makes a tensor counted again');
  const after = external() - before;
  t.ok(after >= 2 * bytes - slack && after < 2 * bytes + slack, `the result and the kept tensor are counted once the scope closes (+${after} bytes)`);
  result.dispose();
  kept!.dispose();
  t.ok(Math.abs(external() - before) < slack, 'and nothing remains counted once they are disposed');
  t.equal(native().hostPoolStats().scopedBytes, 0, 'no array is left scoped');

  // The binding itself: only whole pool arrays, typed errors for bad arguments.
  t.equal(native().setF32Scoped(new Float32Array(8), true), false, 'a JavaScript-allocated array: left alone');
  t.throws(() => native().setF32Scoped(new Uint8Array(4) as unknown as Float32Array, true), { code: 'ERR_SVDQ_ARGUMENT', message: /'a'/ });
  t.throws(() => native().setF32Scoped(new Float32Array(4), 1 as unknown as boolean), { code: 'ERR_SVDQ_ARGUMENT', message: /'scoped'/ });
});
