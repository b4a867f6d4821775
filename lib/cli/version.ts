/** The package version, read from the package.json at the package root. */

import { readFileSync } from 'node:fs';

/**
 * This file is lib/cli/version.ts in the sources and dist/cli/version.js when compiled: both are
 * two levels below the package root, so one relative URL serves both.
 */
const PACKAGE_JSON_URL = new URL('../../package.json', import.meta.url);

export function packageVersion(): string {
  const parsed: unknown = JSON.parse(readFileSync(PACKAGE_JSON_URL, 'utf8'));
  const version = parsed !== null && typeof parsed === 'object' ? (parsed as { version?: unknown }).version : undefined;
  if (typeof version !== 'string') throw new Error(`package.json at ${PACKAGE_JSON_URL.pathname} has no version string`);
  return version;
}
