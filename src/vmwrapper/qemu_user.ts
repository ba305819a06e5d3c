/**
 * The unprivileged user QEMU runs as (--qemu-user). The launcher drops QEMU to this uid/gid after
 * entering the pod's netns; vmlet gives that user exactly the files a VM needs (qemu_access.ts).
 * "root" keeps the old behaviour: QEMU as uid 0 without capabilities.
 *
 * Only /etc/passwd is read (no NSS): the user is a local system user made by scripts/install.sh.
 */
import { readFileSync } from 'node:fs';
import { FailedPreconditionError, InvalidArgumentError, errorText } from '../errors.js';

export const DEFAULT_QEMU_USER = 'vmlet-qemu';
/** The --qemu-user value that keeps QEMU at uid 0 (no uid drop). */
export const ROOT_QEMU_USER = 'root';

export interface QemuUser {
  name: string;
  uid: number;
  /** The user's primary group; QEMU runs with it and no supplementary groups. */
  gid: number;
}

const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;

/** Checks a --qemu-user value's form (a POSIX-portable user name). */
export function isQemuUserName(name: string): boolean {
  return typeof name === 'string' && USER_NAME.test(name);
}

/**
 * Finds `name` in /etc/passwd text. Pure. Undefined when absent; throws InvalidArgumentError for a
 * line of that name whose ids are not decimal.
 */
export function findPasswdUser(passwd: string, name: string): QemuUser | undefined {
  for (const line of passwd.split('\n')) {
    const fields = line.split(':');
    if (fields.length < 7 || fields[0] !== name) continue;
    const [, , uidText, gidText] = fields;
    if (!/^\d{1,10}$/.test(uidText!) || !/^\d{1,10}$/.test(gidText!)) {
      throw new InvalidArgumentError(`/etc/passwd entry of ${name} has invalid ids`);
    }
    const uid = Number(uidText);
    const gid = Number(gidText);
    if (uid > 0xfffffffe || gid > 0xfffffffe) throw new InvalidArgumentError(`/etc/passwd entry of ${name} has invalid ids`);
    return { name, uid, gid };
  }
  return undefined;
}

/**
 * The QEMU user for a --qemu-user value: undefined for "root", else its uid/gid. Throws
 * FailedPreconditionError when the user does not exist or is uid/gid 0 under another name.
 */
export function resolveQemuUser(name: string, passwdPath = '/etc/passwd'): QemuUser | undefined {
  if (!isQemuUserName(name)) throw new InvalidArgumentError(`qemu user ${JSON.stringify(name)} is not a valid user name`);
  if (name === ROOT_QEMU_USER) return undefined;
  let text: string;
  try {
    text = readFileSync(passwdPath, 'utf8');
  } catch (err) {
    throw new FailedPreconditionError(`cannot read ${passwdPath} to find qemu user ${name}: ${errorText(err)}`, { cause: err });
  }
  const user = findPasswdUser(text, name);
  if (user === undefined) {
    throw new FailedPreconditionError(
      `qemu user ${name} does not exist; create it (scripts/install.sh does: useradd --system --user-group ${name}) or pass --qemu-user root`,
    );
  }
  if (user.uid === 0 || user.gid === 0) {
    throw new FailedPreconditionError(`qemu user ${name} has uid ${user.uid} gid ${user.gid}; it must not be root's (use --qemu-user root for that)`);
  }
  return user;
}
