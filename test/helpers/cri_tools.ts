/** Where the real crictl and critest v1.26.1 live: ../shared/cri-tools beside the clone. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { REPO_ROOT } from './daemon.js';

/** ../shared/cri-tools beside the clone, or beside one of its parents (worktrees live deeper), or $VMLET_CRI_TOOLS. */
export function findCriTools(repoRoot: string = REPO_ROOT, env: NodeJS.ProcessEnv = process.env): string {
  const override = env.VMLET_CRI_TOOLS;
  const candidates: string[] = [];
  if (override) candidates.push(override);
  else {
    for (let dir = dirname(repoRoot); ; dir = dirname(dir)) {
      candidates.push(join(dir, 'shared', 'cri-tools'));
      if (dirname(dir) === dir) break;
    }
  }
  const found = candidates.find((dir) => existsSync(join(dir, 'critest')));
  if (!found) {
    throw new Error(`critest not found (looked in ${candidates.join(', ')}); set VMLET_CRI_TOOLS to the directory holding critest and crictl`);
  }
  return found;
}
