/** fsync of one file or one directory: what makes a write, or a rename or unlink in a directory, durable. */
import { open } from 'node:fs/promises';

export async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Makes a rename or unlink in `dir` durable. */
export async function fsyncDir(dir: string): Promise<void> {
  await fsyncFile(dir);
}
