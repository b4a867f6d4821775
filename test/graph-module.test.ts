// Module: named children, dotted names, get/set submodule (and their errors), forward hooks.
import t from 'tap';
import { Tensor } from '../lib/tensor.js';
import { ArgumentError } from '../lib/errors.js';
import { GELU, LayerNorm, Linear, MLP, Module, SelfAttention, Sequential, SiLU } from '../lib/graph/index.js';

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

/** A user-defined module: out = x · factor, counting its calls. */
class Scale extends Module {
  calls = 0;
  constructor(readonly factor: number) {
    super();
  }
  override async forward(x: Tensor): Promise<Tensor> {
    this.calls++;
    return Tensor.fromStorage((x.data as Float32Array).map((v) => v * this.factor), x.shape, 'f32');
  }
}

t.test('namedModules yields dotted names depth-first in registration order', async (t) => {
  const model = new Sequential(new LayerNorm(4), new MLP(4, 8), new Sequential(new SiLU(), new SelfAttention(4, 2)));
  const names = [...model.namedModules()].map(([n, m]) => `${n}:${m.constructor.name}`);
  t.same(names, [
    ':Sequential', '0:LayerNorm', '1:MLP', '1.fc1:Linear', '1.act:GELU', '1.fc2:Linear', '2:Sequential', '2.0:SiLU',
    '2.1:SelfAttention', '2.1.to_q:Linear', '2.1.to_k:Linear', '2.1.to_v:Linear', '2.1.to_out:Linear',
  ]);
  t.same([...model.namedChildren()].map(([n]) => n), ['0', '1', '2']);
  t.same([...model.namedModules('model')].slice(0, 2).map(([n]) => n), ['model', 'model.0']);
  // A shared module is yielded once, under its first name.
  const shared = new SiLU();
  const s = new Sequential(shared, shared);
  t.same([...s.namedModules()].map(([n]) => n), ['', '0']);
});

t.test('getSubmodule / setSubmodule by dotted name; errors name the missing segment', async (t) => {
  const model = new Sequential(new MLP(4, 8), new Sequential(new SiLU()));
  t.equal(model.getSubmodule(''), model);
  t.ok(model.getSubmodule('0.fc2') instanceof Linear);
  const e1 = errorOf(() => model.getSubmodule('0.fc3'));
  t.ok(e1 instanceof ArgumentError && e1.argument === 'name', 'ArgumentError naming name');
  t.match((e1 as Error).message, /'0' has no child 'fc3' \(children: fc1, act, fc2\)/);
  const e2 = errorOf(() => model.getSubmodule('5.fc1'));
  t.match((e2 as Error).message, /the root has no child '5'/);
  const e3 = errorOf(() => model.getSubmodule(3 as unknown as string));
  t.ok(e3 instanceof ArgumentError && e3.argument === 'name');

  const replacement = new Linear(8, 4, { seed: 1 });
  const old = model.setSubmodule('0.fc2', replacement);
  t.ok(old instanceof Linear && old !== replacement, 'returns the previous module');
  t.equal(model.getSubmodule('0.fc2'), replacement);
  t.same([...model.getSubmodule('0').namedChildren()].map(([n]) => n), ['fc1', 'act', 'fc2'], 'replaced in place');

  const e4 = errorOf(() => model.setSubmodule('1.1', new GELU()));
  t.match((e4 as Error).message, /'1' has no child '1'.*strict: false/);
  model.setSubmodule('1.1', new GELU(), { strict: false });
  t.ok(model.getSubmodule('1.1') instanceof GELU, 'strict: false adds a child');
  const e5 = errorOf(() => model.setSubmodule('x.y', new GELU()));
  t.match((e5 as Error).message, /the root has no child 'x'/);
  const e6 = errorOf(() => model.setSubmodule('0.fc2', {} as Module));
  t.ok(e6 instanceof ArgumentError && e6.argument === 'module');
  const e7 = errorOf(() => model.setSubmodule('', new GELU()));
  t.ok(e7 instanceof ArgumentError && e7.argument === 'name');
  const e8 = errorOf(() => model.getSubmodule('0').registerModule('loop', model));
  t.ok(e8 instanceof ArgumentError && e8.argument === 'module', 'cycles are refused');
  const e9 = errorOf(() => model.registerModule('a.b', new GELU()));
  t.ok(e9 instanceof ArgumentError && e9.argument === 'name', 'child names have no dots');
});

t.test('a replaced child is the one the parent runs', async (t) => {
  const seq = new Sequential(new Scale(2), new Scale(3));
  const x = Tensor.fromArray([1, 2], [1, 2]);
  t.same((await seq.call(x)).toArray(), [6, 12]);
  seq.setSubmodule('1', new Scale(10));
  t.same((await seq.call(x)).toArray(), [20, 40]);
});

t.test('forward hooks: order, exact inputs and output, async hooks awaited, removal', async (t) => {
  const inner = new Scale(2);
  const outer = new Sequential(inner, new Scale(5));
  const log: string[] = [];
  const x = Tensor.fromArray([1, 2, 3], [3]);
  let seenInputs: Tensor[] = [];
  let seenOutput: Tensor | undefined;
  const h1 = inner.registerForwardHook((m, inputs, output) => {
    t.equal(m, inner);
    seenInputs = inputs;
    seenOutput = output;
    log.push('inner-1');
  });
  const h2 = inner.registerForwardHook(async () => {
    await new Promise((r) => setTimeout(r, 5));
    log.push('inner-2');
  });
  outer.registerForwardHook((_m, _inputs, output) => {
    log.push(`outer:${output.toArray().join(',')}`);
  });
  const y = await outer.call(x);
  t.same(log, ['inner-1', 'inner-2', 'outer:10,20,30'], 'children before parent, registration order, async awaited');
  t.equal(seenInputs.length, 1);
  t.equal(seenInputs[0], x, 'the hook sees the very input tensor');
  t.same(seenOutput?.toArray(), [2, 4, 6]);
  t.same(y.toArray(), [10, 20, 30]);

  h1.remove();
  h1.remove();
  log.length = 0;
  await outer.call(x);
  t.same(log, ['inner-2', 'outer:10,20,30'], 'removed hook no longer runs');
  h2.remove();
  t.equal(inner.forwardHookCount, 0);

  // A hook that removes itself while running does not disturb the others.
  const order: number[] = [];
  const s = new Scale(1);
  const a = s.registerForwardHook(() => { order.push(1); a.remove(); });
  s.registerForwardHook(() => void order.push(2));
  await s.call(x);
  await s.call(x);
  t.same(order, [1, 2, 2]);

  // forward() alone does not run hooks; a throwing hook rejects call().
  let ran = false;
  const s2 = new Scale(1);
  s2.registerForwardHook(() => { ran = true; });
  await s2.forward(x);
  t.equal(ran, false);
  s2.registerForwardHook(() => { throw new Error('hook failed'); });
  await t.rejects(s2.call(x), /hook failed/);

  const e = errorOf(() => s2.registerForwardHook('no' as unknown as () => void));
  t.ok(e instanceof ArgumentError && e.argument === 'hook');
});

t.test('hooks capture per-layer outputs of a model (calibration style)', async (t) => {
  const model = new MLP(4, 8, { seed: 3 });
  const captured = new Map<string, number[]>();
  const handles = [...model.namedModules()]
    .filter(([, m]) => m instanceof Linear)
    .map(([name, m]) => m.registerForwardHook((_m, inputs) => void captured.set(name, inputs[0].shape.slice())));
  await model.call(Tensor.zeros([2, 3, 4], 'f32'));
  t.same([...captured.entries()], [['fc1', [2, 3, 4]], ['fc2', [2, 3, 8]]]);
  for (const h of handles) h.remove();
});
