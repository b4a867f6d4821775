// Issue 5's concurrency check, shared by the CPU and GPU native-inference tests.
import type { Test } from 'tap';
import { disableNativeInference, NativeLinear, type Module } from '../../lib/index.js';
import { bitsEqual, input } from './model-fixture.js';

/**
 * 64 concurrent forwards of a model with native inference on give the same bits as sequential ones;
 * then disabling while 8 forwards are in flight: they finish, and every native layer is freed after.
 * Returns the (now disposed) native layers.
 */
export async function checkConcurrentForwards(t: Test, model: Module, freedMessage: string): Promise<NativeLinear[]> {
  const inputs = Array.from({ length: 64 }, (_, i) => input(1000 + i, 1 + (i % 7)));
  const sequential: ArrayBufferView[] = [];
  for (const x of inputs) sequential.push((await model.call(x)).data);
  const concurrent = await Promise.all(inputs.map((x) => model.call(x)));
  let same = 0;
  for (let i = 0; i < 64; i++) if (bitsEqual(concurrent[i].data, sequential[i])) same++;
  t.equal(same, 64);
  const natives = [...model.namedModules()].map(([, m]) => m).filter((m): m is NativeLinear => m instanceof NativeLinear);
  const inflight = Promise.all(inputs.slice(0, 8).map((x) => model.call(x)));
  disableNativeInference(model);
  const done = await inflight;
  t.equal(done.length, 8);
  for (const n of natives) t.ok(n.disposed, freedMessage);
  return natives;
}
