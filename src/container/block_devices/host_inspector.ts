/** The DeviceInspector of plan.ts over the real file system. */
import { lstat, realpath } from 'node:fs/promises';
import type { DeviceInspector, DeviceKind } from './plan.js';

export const hostDeviceInspector: DeviceInspector = {
  async lstat(path: string): Promise<DeviceKind | undefined> {
    try {
      const st = await lstat(path);
      if (st.isBlockDevice()) return 'block';
      if (st.isCharacterDevice()) return 'char';
      if (st.isFile()) return 'file';
      if (st.isDirectory()) return 'dir';
      if (st.isSymbolicLink()) return 'symlink';
      return 'other';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw err;
    }
  },
  realpath: (path: string) => realpath(path),
};
