/** Output files of the benchmarks, each replaced atomically (see lib/io/atomic-write.ts). */

import { writeFileAtomic } from '../io/atomic-write.js';

/** Creates or replaces `path` with `text` (UTF-8); readers never see a partial file. */
export async function writeTextAtomic(path: string, text: string): Promise<void> {
  const bytes = Buffer.from(text, 'utf8');
  await writeFileAtomic(path, async (file) => {
    let offset = 0;
    while (offset < bytes.length) {
      const { bytesWritten } = await file.write(bytes, offset, bytes.length - offset, offset);
      offset += bytesWritten;
    }
  });
}

/** JSON Lines: one record per line. */
export function jsonLines(records: readonly object[]): string {
  return records.map((record) => JSON.stringify(record)).join('\n') + (records.length > 0 ? '\n' : '');
}
