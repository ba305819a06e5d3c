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
/** libvirt's per-domain directories (qemu:///system): domain-<id>-<name>/master-key.aes. */
export const LIBVIRT_QEMU_LIB_DIR = '/var/lib/libvirt/qemu';
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
  /** The unprivileged uid/gid QEMU runs as; absent = uid 0 without capabilities. */
  qemuUser?: { uid: number; gid: number };
}

/**
 * The privilege drop applied right before QEMU, with why each part is there:
 * - --no-new-privs: nothing QEMU execs (it should exec nothing: libvirt also passes
 *   -sandbox spawn=deny) can gain privileges through setuid bits or file capabilities.
 * - --inh-caps/--ambient-caps/--bounding-set=-all: no capability survives the exec into QEMU, and
 *   none can ever be regained (an empty bounding set caps what any exec could grant).
 * - --securebits noroot…: uid 0 stops meaning "all capabilities" on exec, locked.
 * - --clear-groups: no supplementary groups (device and file access by group).
 * The uid/gid switch (with a QEMU user) comes before these in the same setpriv: see renderLauncher.
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

function checkId(what: string, id: number): void {
  if (!Number.isSafeInteger(id) || id <= 0 || id > 0xfffffffe) {
    throw new InvalidArgumentError(`${what} ${id} must be a non-root id (1..4294967294)`);
  }
}

/** The setpriv options that switch to the QEMU user: real, effective and saved ids (PRIVILEGE_DROP_ARGS clears the groups). */
export function uidDropArgs(user: { uid: number; gid: number }): string[] {
  checkId('qemu uid', user.uid);
  checkId('qemu gid', user.gid);
  return [`--reuid=${user.uid}`, `--regid=${user.gid}`];
}

/**
 * Shell function `grant` (QEMU user only), run as root right before the drop. libvirt prepares a
 * domain for qemu.conf's user, root, so two things QEMU opens by path are root's alone:
 * - the master key (`-object {"qom-type":"secret","id":"masterKey0",...,"file":"<lib>/domain-N-name/master-key.aes"}`):
 *   its directory and file get the QEMU group (0750/0640; libvirt deletes both when the domain
 *   stops) and libvirt's lib dir gets o+x (traverse only, no listing); virtiofsd's sockets in that
 *   directory (`fsN-fs.sock`, volumes) get the QEMU group, read-write, so QEMU can connect;
 * - /dev/net/tun and /dev/kvm: only when this process is in a mount namespace of its own (libvirt's
 *   private /dev for the domain), where they are this domain's copies; the host's nodes are never
 *   touched.
 */
function grantFunction(gid: number): string {
  const lib = LIBVIRT_QEMU_LIB_DIR;
  return `grant() {
  for arg in "$@"; do
    case $arg in
      *'"id":"masterKey0"'*) ;;
      *) continue ;;
    esac
    key=\${arg#*'"file":"'}
    key=\${key%%'"'*}
    kdir=\${key%/master-key.aes}
    kname=\${kdir#${lib}/}
    [ "${lib}/\$kname/master-key.aes" = "\$key" ] || fail "unexpected master key path \$key"
    case \$kname in
      domain-[0-9]*) ;;
      *) fail "unexpected master key path \$key" ;;
    esac
    case \$kname in
      *[!A-Za-z0-9_.-]*) fail "unexpected master key path \$key" ;;
    esac
    [ -d "\$kdir" ] && [ ! -L "\$kdir" ] && [ -f "\$key" ] && [ ! -L "\$key" ] || fail "master key \$key is missing"
    /bin/chmod o+x ${lib} && /bin/chgrp ${gid} "\$kdir" "\$key" && /bin/chmod 0750 "\$kdir" && /bin/chmod 0640 "\$key" ||
      fail "cannot give the QEMU group the master key \$key"
    # virtiofsd's vhost-user sockets (volumes), made by libvirt before QEMU starts: QEMU connects to them.
    for sock in "\$kdir"/fs*-fs.sock; do
      [ -S "\$sock" ] && [ ! -L "\$sock" ] || continue
      /bin/chgrp ${gid} "\$sock" && /bin/chmod 0660 "\$sock" || fail "cannot give the QEMU group \$sock"
    done
  done
  [ /proc/self/ns/mnt -ef /proc/1/ns/mnt ] && return 0
  for dev in /dev/net/tun /dev/kvm; do
    [ -c "\$dev" ] || continue
    /bin/chgrp ${gid} "\$dev" && /bin/chmod 0660 "\$dev" || fail "cannot give the QEMU group \$dev"
  done
}
`;
}

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
  const user = options.qemuUser;
  // libvirt's capability probe keeps uid 0 (without capabilities): it binds its QMP socket in
  // libvirt's root-only lib dir.
  const podDrop = user === undefined ? drop : `${uidDropArgs(user).join(' ')} ${drop}`;
  const env = VMWRAPPER_NETNS_ENV;
  return `#!/bin/sh
${LAUNCHER_MARKER}: written by vmlet (src/vmwrapper/launcher.ts); do not edit.
# libvirt runs this as a domain's <emulator>. With ${env}=${NETNS_DIR}/vmlet-… it enters that
# network namespace; in every case it drops all privileges and exec()s QEMU with the same
# arguments, so the process libvirt supervises is QEMU itself.
# qemu: ${options.qemuIdentity}
${user === undefined ? '' : `# qemu user: uid ${user.uid} gid ${user.gid}\n`}fail() {
  printf 'vmlet-vmwrapper: %s\\n' "$1" >&2
  exit ${LAUNCHER_REFUSED_EXIT}
}
${user === undefined ? '' : grantFunction(user.gid)}if [ -z "\${${env}+set}" ]; then
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
${user === undefined ? '' : 'grant "$@"\n'}exec ${options.nsenterPath} --net="\$ns" -- ${options.setprivPath} ${podDrop} -- ${options.qemuPath} "$@"
`;
}
