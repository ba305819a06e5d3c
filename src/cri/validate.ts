/**
 * Checks shared by the CRI verbs. Every CRI field is hostile until checked here: bounded sizes,
 * no control characters where a value can reach a file name, XML or a process argument.
 */
import { isAbsolute, normalize } from 'node:path';
import { InvalidArgumentError } from '../errors.js';

export const MAX_NAME = 253;
export const MAX_MAP_ENTRIES = 256;
export const MAX_KEY = 317; // a Kubernetes qualified key: 253-char prefix + '/' + 63-char name
export const MAX_VALUE = 256 * 1024; // annotations may hold cloud-init documents
export const MAX_MAP_BYTES = 1024 * 1024;

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

export function requireString(value: string | undefined, field: string, max = MAX_NAME): string {
  if (value === undefined || value === '') throw new InvalidArgumentError(`${field} is required`);
  return checkString(value, field, max);
}

export function checkString(value: string, field: string, max = MAX_NAME): string {
  if (value.length > max) throw new InvalidArgumentError(`${field} is longer than ${max} characters`);
  if (CONTROL.test(value)) throw new InvalidArgumentError(`${field} contains control characters`);
  return value;
}

export function checkStringMap(map: Record<string, string> | undefined, field: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!map) return out;
  const entries = Object.entries(map);
  if (entries.length > MAX_MAP_ENTRIES) throw new InvalidArgumentError(`${field} has more than ${MAX_MAP_ENTRIES} entries`);
  let bytes = 0;
  for (const [k, v] of entries) {
    if (k === '' || k.length > MAX_KEY || CONTROL.test(k)) throw new InvalidArgumentError(`${field} has an invalid key ${JSON.stringify(k.slice(0, 64))}`);
    if (v.length > MAX_VALUE) throw new InvalidArgumentError(`${field}[${k}] is longer than ${MAX_VALUE} characters`);
    bytes += k.length + v.length;
    out[k] = v;
  }
  if (bytes > MAX_MAP_BYTES) throw new InvalidArgumentError(`${field} is larger than ${MAX_MAP_BYTES} bytes`);
  return out;
}

/** An absolute, normalized host path without `..` segments or control characters. */
export function checkAbsolutePath(value: string, field: string): string {
  checkString(value, field, 4096);
  if (!isAbsolute(value)) throw new InvalidArgumentError(`${field} must be an absolute path`);
  if (value.split('/').includes('..')) throw new InvalidArgumentError(`${field} must not contain '..'`);
  return normalize(value);
}

/** A path relative to a base directory that cannot climb out of it. */
export function checkRelativePath(value: string, field: string): string {
  checkString(value, field, 4096);
  if (isAbsolute(value)) throw new InvalidArgumentError(`${field} must be relative`);
  const norm = normalize(value);
  if (norm === '..' || norm.startsWith('../') || norm === '.') throw new InvalidArgumentError(`${field} must stay inside its directory`);
  return norm;
}

/** RFC 1123 hostname (labels of letters, digits and hyphens). */
export function checkHostname(value: string, field: string): string {
  if (value === '') return value;
  if (value.length > 253 || !/^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/.test(value)) {
    throw new InvalidArgumentError(`${field} ${JSON.stringify(value.slice(0, 64))} is not a valid hostname`);
  }
  return value;
}

/** Ids are lowercase hex; a unique prefix is accepted as crictl users expect. */
export function checkIdOrPrefix(value: string | undefined, field: string): string {
  if (value === undefined || value === '') throw new InvalidArgumentError(`${field} is required`);
  if (!/^[a-f0-9]{1,64}$/.test(value)) throw new InvalidArgumentError(`${field} ${JSON.stringify(value.slice(0, 80))} is not a valid id`);
  return value;
}
