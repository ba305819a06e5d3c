/**
 * A DHCPv6 client socket for the stand-in VMs of the netd tests: port 546 on a device of the
 * stand-in's netns, read through vmlet's native endpoint (the reply comes from a link-local
 * address whose scope is an index of that netns, which Node's dgram would look up in the host's).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { ALL_DHCP_SERVERS, DHCP6_CLIENT_PORT, DHCP6_SERVER_PORT, decodeDhcp6Message, encodeDhcp6Message, type Dhcp6Message } from '../../../src/network/ipv6/dhcp6_packet.js';
import type { Udp6Socket } from '../../../src/network/ipv6/responder.js';
import { udp6SocketOnDevice } from '../../../src/network/ipv6/sockets.js';

export interface Dhcp6Answer {
  message: Dhcp6Message;
  /** The server's address, without a zone. */
  from: string;
  /** The index of the client's device in its netns, as the kernel reported it. */
  ifindex: number;
}

export class Dhcp6TestClient {
  private readonly replies: Dhcp6Answer[] = [];
  private readonly errors: Error[] = [];
  /** Messages sent, retransmissions included: the server answers each one. */
  sent = 0;

  private constructor(
    private readonly socket: Udp6Socket,
    /** The client device's index in its netns: the scope of ff02::1:2. */
    readonly ifindex: number,
  ) {
    socket.receive(
      (d) => this.replies.push({ message: decodeDhcp6Message(d.data), from: d.address, ifindex: d.ifindex }),
      (err) => this.errors.push(err),
    );
  }

  /** On `device` of the netns named `netns` (under /run/netns). */
  static open(netns: string, device: string): Dhcp6TestClient {
    const ifindex = Number(execFileSync('ip', ['-n', netns, '-o', 'link', 'show', 'dev', device], { encoding: 'utf8' }).split(':')[0]);
    return new Dhcp6TestClient(udp6SocketOnDevice(`/run/netns/${netns}`, device, DHCP6_CLIENT_PORT, ALL_DHCP_SERVERS), ifindex);
  }

  /** Sends `message` to ff02::1:2 on the device (up to 5 times, 1 s apart) until an answer with its transaction id. */
  async exchange(message: Dhcp6Message, expectType: number): Promise<Dhcp6Answer> {
    this.replies.length = 0;
    for (let attempt = 0; attempt < 5; attempt++) {
      this.sent += 1;
      await this.socket.send(encodeDhcp6Message(message), { address: ALL_DHCP_SERVERS, port: DHCP6_SERVER_PORT, ifindex: this.ifindex });
      const deadline = Date.now() + 1000;
      while (Date.now() < deadline) {
        const reply = this.replies.find((r) => r.message.transactionId === message.transactionId);
        if (reply) {
          assert.equal(reply.message.type, expectType, `reply type to ${message.type}`);
          return reply;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    throw new Error(`no answer to DHCPv6 message type ${message.type}${this.errors.length > 0 ? ` (receive errors: ${this.errors.map((e) => e.message).join('; ')})` : ''}`);
  }

  close(): Promise<void> {
    return this.socket.close();
  }
}
