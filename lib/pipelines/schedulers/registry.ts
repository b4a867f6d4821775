/**
 * Scheduler classes by their diffusers `_class_name`, and construction from a config.
 */
import { ArgumentError } from '../../errors.js';
import type { ConfigSpec } from './config.js';
import { DDIMScheduler } from './ddim.js';
import { DPMSolverMultistepScheduler } from './dpm-solver-multistep.js';
import { EulerDiscreteScheduler } from './euler-discrete.js';
import { FlowMatchEulerDiscreteScheduler } from './flow-match-euler-discrete.js';
import type { Scheduler } from './types.js';

export interface SchedulerClass {
  new (config?: object): Scheduler;
  readonly className: string;
  readonly configSpec: ConfigSpec;
}

/** The supported schedulers, keyed by diffusers class name. */
export const SCHEDULER_CLASSES = Object.freeze({
  DDIMScheduler,
  EulerDiscreteScheduler,
  DPMSolverMultistepScheduler,
  FlowMatchEulerDiscreteScheduler,
}) satisfies Readonly<Record<string, SchedulerClass>>;

export type SchedulerClassName = keyof typeof SCHEDULER_CLASSES;

export function isSchedulerClassName(value: unknown): value is SchedulerClassName {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(SCHEDULER_CLASSES, value);
}

/**
 * A scheduler from a diffusers config (for example the object loadSchedulerConfig returns):
 * `_class_name` picks the class; the other keys configure it (ArgumentError on bad values).
 */
export function schedulerFromConfig(config: object): Scheduler {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new ArgumentError('config', 'a scheduler config object with a _class_name', config);
  }
  const className = (config as Record<string, unknown>)._class_name;
  if (!isSchedulerClassName(className)) {
    throw new ArgumentError('config._class_name', `one of ${Object.keys(SCHEDULER_CLASSES).join(', ')}`, className);
  }
  return new SCHEDULER_CLASSES[className](config);
}
