/**
 * Real processes for the serving tests: `svdquant serve` / `svdquant worker` (the built CLI) and a
 * redis-server on a free loopback port. Everything waits for events (lines on stdout, exits),
 * never for a fixed time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, ROOT } from './cli.js';

export interface Proc {
  readonly child: ChildProcess;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves with the first match of `pattern` in the output (now or later). */
  waitFor(pattern: RegExp): Promise<RegExpMatchArray>;
  /** Resolves with the exit code (or the signal name). */
  readonly exited: Promise<number | string>;
  kill(signal?: NodeJS.Signals): void;
}

export function spawnProc(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Proc {
  const child = spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const waiters: Array<() => void> = [];
  const onData = (chunk: Buffer): void => {
    text += chunk.toString('utf8');
    for (const w of waiters.splice(0)) w();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  let done = false;
  void exited.then(() => { done = true; for (const w of waiters.splice(0)) w(); });
  return {
    child,
    output: () => text,
    waitFor(pattern) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const m = text.match(pattern);
          if (m !== null) resolve(m);
          else if (done) reject(new Error(`process exited before printing ${pattern}; output:\n${text}`));
          else waiters.push(check);
        };
        check();
      });
    },
    exited,
    kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

/** Sends SIGTERM to every process at once and resolves with their exit codes (0 each on a graceful stop). */
export async function stopGracefully(...procs: Proc[]): Promise<Array<number | string>> {
  for (const p of procs) p.kill('SIGTERM');
  return Promise.all(procs.map((p) => p.exited));
}

/**
 * A function that registers a spawned process to be killed (SIGKILL) and awaited when the test file
 * ends (`t.teardown`), and returns it.
 */
export function processTracker(t: { teardown(fn: () => unknown): void }): <P extends Proc>(p: P) => P {
  const procs: Proc[] = [];
  t.teardown(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
  });
  return (p) => {
    procs.push(p);
    return p;
  };
}

export interface ServeProc extends Proc {
  readonly url: string;
}

/** `svdquant serve --port 0 ARGS`, resolved once it listens. */
export async function startServe(args: string[]): Promise<ServeProc> {
  const proc = spawnProc(process.execPath, [CLI, 'serve', '--port', '0', ...args]);
  const [, url] = await proc.waitFor(/listening on (http:\/\/[^\s]+)/);
  return { ...proc, url };
}

/** `svdquant worker ARGS`, resolved once it is ready. */
export async function startWorker(args: string[]): Promise<Proc & { id: string }> {
  const proc = spawnProc(process.execPath, [CLI, 'worker', ...args]);
  const [, id] = await proc.waitFor(/svdquant worker: (\S+) ready/);
  return { ...proc, id };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** A redis-server of its own on a free loopback port, nothing persisted. */
export async function startRedis(): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'svdq-redis-'));
  const port = await freePort();
  const proc = spawnProc('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir]);
  await proc.waitFor(/Ready to accept connections/);
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      proc.kill('SIGTERM');
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface JsonImages {
  images: Array<{ label: number; labelName: string; seed: number; png: string }>;
  timings: { queueMs: number; generateMs: number; batchImages: number; batchRequests: number; totalMs: number };
  worker?: string;
}

export async function postImages(url: string, body: unknown, init: RequestInit = {}): Promise<{ status: number; headers: Headers; json: any }> {
  const response = await fetch(`${url}/v1/images`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...init,
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: response.status, headers: response.headers, json };
}

/** The value of one sample line of /metrics (`name{labels}`), 0 when absent. */
export async function metric(url: string, sample: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(sample + ' '));
  return line === undefined ? 0 : Number(line.slice(sample.length + 1));
}

/** Polls /metrics until `predicate` holds for the sample's value (an event, not a duration). */
export async function waitForMetric(url: string, sample: string, predicate: (value: number) => boolean): Promise<number> {
  for (;;) {
    const value = await metric(url, sample);
    if (predicate(value)) return value;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
