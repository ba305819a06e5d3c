/**
 * The vmwrapper launcher: the small /bin/sh script libvirt runs as a domain's <emulator>. It
 * enters the pod's network namespace named by VMLET_NETNS (passed with <qemu:env>), drops every
 * capability and exec()s QEMU with libvirt's arguments, so the process libvirt forked and
 * supervises *becomes* QEMU (one pid, no wrapper parent left). Without VMLET_NETNS (libvirt's
 * capability probe) it drops the same privileges and execs QEMU in place.
 *
 * A shell script rather than `node …`: Node takes ~40 ms to start and cannot setns()+exec() at
 * all; dash + nsenter + setpriv are three exec()s (measured in the README). Everything the
 * script does is decided here, as a pure function, so its text is reviewed and tested as a whole.
 */
import { isAbsolute, normalize } from 'node:path';
import { InvalidArgumentError } from '../errors.js';

/** Environment variable carrying the pod netns path from <qemu:env> to the launcher. */
export const VMWRAPPER_NETNS_ENV = 'VMLET_NETNS';
/** Where named network namespaces live (`ip netns` / vmlet's netd). */
export const NETNS_DIR = '/run/netns';
/** Exit status of the launcher when it refuses to start QEMU (QEMU itself never uses 125). */
export const LAUNCHER_REFUSED_EXIT = 125;
/** First line after the shebang; installVmwrapper recognises its own files by it. */
export const LAUNCHER_MARKER = '# vmlet vmwrapper launcher';

export interface LauncherOptions {
  /** The real emulator, e.g. /usr/bin/qemu-system-x86_64. */
  qemuPath: string;
  nsenterPath: string;
  setprivPath: string;
  /**
   * Identity of the QEMU binary (from its stat). libvirt caches an emulator's capabilities keyed
   * by the emulator file's ctime; the emulator is this script, so a QEMU upgrade would go
   * unnoticed. Writing the identity into the script makes an upgrade change the script's content,
   * installVmwrapper then rewrites it and libvirt probes again.
   */
  qemuIdentity: string;
}

/**
 * The privilege drop applied right before QEMU, with why each part is there:
 * - --no-new-privs: nothing QEMU execs (it should exec nothing: libvirt also passes
 *   -sandbox spawn=deny) can gain privileges through setuid bits or file capabilities.
 * - --inh-caps/--ambient-caps/--bounding-set=-all: no capability survives the exec into QEMU, and
 *   none can ever be regained (an empty bounding set caps what any exec could grant).
 * - --securebits noroot…: uid 0 stops meaning "all capabilities" on exec, locked.
 * - --clear-groups: no supplementary groups (device and file access by group).
 * QEMU keeps uid/gid 0 (see README: libvirt labels the domain's files for the configured user).
 */
export const PRIVILEGE_DROP_ARGS: readonly string[] = [
  '--no-new-privs',
  '--clear-groups',
  '--inh-caps=-all',
  '--ambient-caps=-all',
  '--bounding-set=-all',
  '--securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked,+keep_caps_locked',
];

/** Absolute, normalized, and made only of characters that need no shell quoting. */
const SAFE_PATH = /^\/[A-Za-z0-9_./+-]*$/;
const SAFE_IDENTITY = /^[A-Za-z0-9_.:=/ +-]{1,512}$/;

function checkLauncherPath(what: string, path: string): void {
  if (typeof path !== 'string' || !SAFE_PATH.test(path) || !isAbsolute(path) || normalize(path) !== path || path.endsWith('/') || path.length > 1024) {
    throw new InvalidArgumentError(`${what} ${JSON.stringify(path)} must be an absolute normalized file path of [A-Za-z0-9_./+-]`);
  }
}

/** The launcher script for `options`. Pure; throws InvalidArgumentError on unsafe options. */
export function renderLauncher(options: LauncherOptions): string {
  checkLauncherPath('qemu path', options.qemuPath);
  checkLauncherPath('nsenter path', options.nsenterPath);
  checkLauncherPath('setpriv path', options.setprivPath);
  if (!SAFE_IDENTITY.test(options.qemuIdentity)) {
    throw new InvalidArgumentError(`qemu identity ${JSON.stringify(options.qemuIdentity)} has unsafe characters`);
  }
  const drop = PRIVILEGE_DROP_ARGS.join(' ');
  const env = VMWRAPPER_NETNS_ENV;
  return `#!/bin/sh
${LAUNCHER_MARKER}: written by vmlet (src/vmwrapper/launcher.ts); do not edit.
# libvirt runs this as a domain's <emulator>. With ${env}=${NETNS_DIR}/vmlet-… it enters that
# network namespace; in every case it drops all privileges and exec()s QEMU with the same
# arguments, so the process libvirt supervises is QEMU itself.
# qemu: ${options.qemuIdentity}
fail() {
  printf 'vmlet-vmwrapper: %s\\n' "$1" >&2
  exit ${LAUNCHER_REFUSED_EXIT}
}
if [ -z "\${${env}+set}" ]; then
  # libvirt's capability probe: no pod, no namespace to enter.
  exec ${options.setprivPath} ${drop} -- ${options.qemuPath} "$@"
fi
ns=\$${env}
name=\${ns#${NETNS_DIR}/}
# Only ${NETNS_DIR}/<vmlet netns name>: no other directory, no "..", no "/", nothing odd.
[ "${NETNS_DIR}/\$name" = "\$ns" ] || fail "${env} must be ${NETNS_DIR}/<name>"
case \$name in
  vmlet-[a-z0-9]*) ;;
  *) fail "${env} does not name a vmlet network namespace" ;;
esac
case \$name in
  *[!a-z0-9-]* | *-) fail "${env} does not name a vmlet network namespace" ;;
esac
[ \${#name} -le 69 ] || fail "${env} names a netns longer than vmlet makes"
[ -f "\$ns" ] && [ ! -L "\$ns" ] || fail "network namespace \$ns does not exist"
exec ${options.nsenterPath} --net="\$ns" -- ${options.setprivPath} ${drop} -- ${options.qemuPath} "$@"
`;
}
