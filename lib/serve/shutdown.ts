/**
 * Graceful shutdown on SIGTERM/SIGINT: the first signal starts `close(deadline)`; the returned
 * promise resolves once it is done, so the command can exit 0. A second signal does not interrupt it
 * (the deadline bounds it already).
 */

export function onShutdownSignal(close: (signal: NodeJS.Signals) => Promise<void>, signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT']): Promise<NodeJS.Signals> {
  return new Promise((resolve, reject) => {
    let started = false;
    const handler = (signal: NodeJS.Signals): void => {
      if (started) return;
      started = true;
      close(signal).then(() => {
        for (const s of signals) process.off(s, handler);
        resolve(signal);
      }, reject);
    };
    for (const s of signals) process.on(s, handler);
  });
}
