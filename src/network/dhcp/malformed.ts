import { InvalidArgumentError } from '../../errors.js';

/** A DHCP datagram or option value that does not follow RFC 2131/2132 (or the option's own RFC). */
export class MalformedDhcpPacketError extends InvalidArgumentError {}
