/**
 * Diffusers-compatible noise schedulers: DDIM, Euler, DPM-Solver++ and FlowMatch Euler, with
 * `scheduler_config.json` loading and saving.
 */
export type { Scheduler, SetTimestepsOptions, StepOptions, NoiseSource } from './types.js';
export type { SchedulerConfig } from './config.js';
export { DDIMScheduler } from './ddim.js';
export { EulerDiscreteScheduler } from './euler-discrete.js';
export { DPMSolverMultistepScheduler } from './dpm-solver-multistep.js';
export { FlowMatchEulerDiscreteScheduler, calculateShift } from './flow-match-euler-discrete.js';
export { SCHEDULER_CLASSES, schedulerFromConfig, isSchedulerClassName } from './registry.js';
export type { SchedulerClass, SchedulerClassName } from './registry.js';
export { loadSchedulerConfig, saveSchedulerConfig, SCHEDULER_CONFIG_NAME } from './config-file.js';
