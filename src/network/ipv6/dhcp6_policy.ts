/**
 * What vmlet's DHCPv6 server answers (RFC 8415 §18.3), given the one lease of the pod bridge it
 * serves. A pod bridge has exactly two ports, the VM's TAP and the CNI veth, and the isolation
 * rules keep DHCPv6 off the veth, so whoever asks on that bridge is the VM's NIC: the lease is not
 * looked up by DUID (a client's DUID is its own choice, often not derived from its MAC). Stateful
 * addresses only (IA_NA); temporary addresses and prefix delegation are refused. Pure.
 */
import { InvalidArgumentError } from '../../errors.js';
import { canonicalIpv6 } from './address.js';
import {
  Dhcp6MessageType,
  Dhcp6Option,
  Dhcp6Status,
  decodeIaNa,
  encodeAddressList,
  encodeDomainList,
  encodeIaNa,
  encodeStatus,
  optionValue,
  type Dhcp6Message,
  type Dhcp6OptionValue,
  type IaNa,
} from './dhcp6_packet.js';

export interface Dhcp6Lease {
  /** The address the VM's NIC gets (CNI's, for this interface). */
  address: string;
  /** Of the address; with it, the router advertisement's on-link prefix. */
  prefixLength: number;
  dns: string[];
  search: string[];
  /** Preferred and valid lifetime of the address; T1 and T2 are half and 0.8 of it. */
  leaseSeconds: number;
}

export type Dhcp6Decision =
  | { action: 'reply'; reply: 'advertise' | 'reply'; message: Dhcp6Message }
  | { action: 'none'; reason: 'not-for-us' | 'no-client-id' | 'unhandled-type'; detail: string };

export function validateDhcp6Lease(lease: Dhcp6Lease): Dhcp6Lease {
  if (!Number.isInteger(lease.prefixLength) || lease.prefixLength < 1 || lease.prefixLength > 128) {
    throw new InvalidArgumentError(`DHCPv6 lease prefix length ${lease.prefixLength} is not in 1..128`);
  }
  if (!Number.isInteger(lease.leaseSeconds) || lease.leaseSeconds < 60 || lease.leaseSeconds > 0xfffffffe) {
    throw new InvalidArgumentError(`DHCPv6 lease time ${lease.leaseSeconds} s is not in 60..4294967294`);
  }
  // Encoded once here so a bad lease fails when it is set, not at the first request.
  encodeAddressList(lease.dns);
  encodeDomainList(lease.search);
  return { ...lease, address: canonicalIpv6(lease.address, 'DHCPv6 lease address'), dns: lease.dns.map((d) => canonicalIpv6(d)), search: [...lease.search] };
}

function none(reason: Extract<Dhcp6Decision, { action: 'none' }>['reason'], detail: string): Dhcp6Decision {
  return { action: 'none', reason, detail };
}

/** The IA_NAs of the request, in order; one that does not decode is answered as if empty. */
function requestedIas(request: Dhcp6Message): IaNa[] {
  return request.options
    .filter((o) => o.code === Dhcp6Option.IA_NA && o.value.length >= 4)
    .map((o) => {
      try {
        return decodeIaNa(o.value);
      } catch {
        return { iaid: o.value.readUInt32BE(0), t1: 0, t2: 0, addresses: [] };
      }
    });
}

/**
 * The IA_NAs of the answer: the first one gets the lease's address, any further one NoAddrsAvail
 * (one NIC, one address). `release` answers with lifetimes of zero.
 */
function answeredIas(lease: Dhcp6Lease, ias: readonly IaNa[]): Dhcp6OptionValue[] {
  const t1 = Math.floor(lease.leaseSeconds / 2);
  const t2 = Math.floor((lease.leaseSeconds * 4) / 5);
  return ias.map((ia, i) => ({
    code: Dhcp6Option.IA_NA,
    value: encodeIaNa(
      i === 0
        ? { iaid: ia.iaid, t1, t2, addresses: [{ address: lease.address, preferredLifetime: lease.leaseSeconds, validLifetime: lease.leaseSeconds }] }
        : { iaid: ia.iaid, t1: 0, t2: 0, addresses: [], status: { code: Dhcp6Status.NO_ADDRS_AVAIL, message: 'one address per interface' } },
    ),
  }));
}

function configOptions(lease: Dhcp6Lease): Dhcp6OptionValue[] {
  const out: Dhcp6OptionValue[] = [];
  if (lease.dns.length > 0) out.push({ code: Dhcp6Option.DNS_SERVERS, value: encodeAddressList(lease.dns) });
  if (lease.search.length > 0) out.push({ code: Dhcp6Option.DOMAIN_LIST, value: encodeDomainList(lease.search) });
  return out;
}

function status(code: number, message: string): Dhcp6OptionValue {
  return { code: Dhcp6Option.STATUS_CODE, value: encodeStatus(code, message) };
}

/** Decides the answer to `request` from the lease of this bridge (`serverDuid` names the server). */
export function decideDhcp6Reply(lease: Dhcp6Lease, serverDuid: Buffer, request: Dhcp6Message): Dhcp6Decision {
  const clientId = optionValue(request, Dhcp6Option.CLIENTID);
  const serverId = optionValue(request, Dhcp6Option.SERVERID);
  const { type } = request;
  const mustNameUs = type === Dhcp6MessageType.REQUEST || type === Dhcp6MessageType.RENEW || type === Dhcp6MessageType.RELEASE || type === Dhcp6MessageType.DECLINE;
  const mustNotNameAnyone = type === Dhcp6MessageType.SOLICIT || type === Dhcp6MessageType.REBIND || type === Dhcp6MessageType.CONFIRM;
  if (mustNameUs && (!serverId || !serverId.equals(serverDuid))) return none('not-for-us', `message type ${type} names another server`);
  if (mustNotNameAnyone && serverId) return none('not-for-us', `message type ${type} must not carry a server id (RFC 8415 §16)`);
  if (!clientId && type !== Dhcp6MessageType.INFORMATION_REQUEST) return none('no-client-id', `message type ${type} without a client id`);
  if (type === Dhcp6MessageType.INFORMATION_REQUEST && serverId && !serverId.equals(serverDuid)) {
    return none('not-for-us', 'information request names another server');
  }

  const head: Dhcp6OptionValue[] = [
    ...(clientId ? [{ code: Dhcp6Option.CLIENTID, value: clientId }] : []),
    { code: Dhcp6Option.SERVERID, value: serverDuid },
  ];
  const reply = (kind: 'advertise' | 'reply', options: Dhcp6OptionValue[]): Dhcp6Decision => ({
    action: 'reply',
    reply: kind,
    message: { type: kind === 'advertise' ? Dhcp6MessageType.ADVERTISE : Dhcp6MessageType.REPLY, transactionId: request.transactionId, options: [...head, ...options] },
  });
  const ias = requestedIas(request);

  switch (type) {
    case Dhcp6MessageType.SOLICIT: {
      const rapid = optionValue(request, Dhcp6Option.RAPID_COMMIT) !== undefined;
      const body = [
        ...(ias.length > 0 ? answeredIas(lease, ias) : [status(Dhcp6Status.NO_ADDRS_AVAIL, 'only IA_NA addresses are served')]),
        ...configOptions(lease),
      ];
      // Rapid commit (RFC 8415 §18.3.1): the one server on the link may answer with a REPLY.
      if (rapid && ias.length > 0) return reply('reply', [{ code: Dhcp6Option.RAPID_COMMIT, value: Buffer.alloc(0) }, ...body]);
      // Preference 255: the client need not wait for other servers' advertisements.
      return reply('advertise', [{ code: Dhcp6Option.PREFERENCE, value: Buffer.from([255]) }, ...body]);
    }
    case Dhcp6MessageType.REQUEST:
    case Dhcp6MessageType.RENEW:
    case Dhcp6MessageType.REBIND:
      if (ias.length === 0) return reply('reply', [status(Dhcp6Status.NO_ADDRS_AVAIL, 'only IA_NA addresses are served'), ...configOptions(lease)]);
      return reply('reply', [...answeredIas(lease, ias), ...configOptions(lease)]);
    case Dhcp6MessageType.CONFIRM: {
      // Whether the client's addresses still fit this link: only the lease's address does.
      const addresses = ias.flatMap((ia) => ia.addresses.map((a) => a.address));
      if (addresses.length === 0) return none('not-for-us', 'confirm without addresses');
      const onLink = addresses.every((a) => a === lease.address);
      return reply('reply', [onLink ? status(Dhcp6Status.SUCCESS, 'on link') : status(Dhcp6Status.NOT_ON_LINK, 'not this link\'s address')]);
    }
    case Dhcp6MessageType.RELEASE:
    case Dhcp6MessageType.DECLINE:
      // The address stays the VM's (it is CNI's, not ours to give to anyone else).
      return reply('reply', [status(Dhcp6Status.SUCCESS, type === Dhcp6MessageType.RELEASE ? 'released' : 'declined')]);
    case Dhcp6MessageType.INFORMATION_REQUEST:
      return reply('reply', configOptions(lease));
    default:
      return none('unhandled-type', `message type ${type} is not one a server answers`);
  }
}
