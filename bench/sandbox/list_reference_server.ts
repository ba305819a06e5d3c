/**
 * Entry point (a child of the bench): a bare grpc-js server with vmlet's proto and loader options
 * but none of vmlet (no :authority rewriter, no records, no logging) that answers ListPodSandbox
 * with one fixed response read from a file. Timing the same call against it tells how much of
 * ListPodSandbox's time is grpc-js and protobuf for a response that size, whatever the runtime does.
 *
 * argv: --socket <path> --response <json file>. Prints "ready" once listening; exits when stdin closes.
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { loadCriServices } from '../../src/cri/proto.js';

const { values } = parseArgs({ options: { socket: { type: 'string' }, response: { type: 'string' } } });
if (!values.socket || !values.response) {
  process.stderr.write('usage: list_reference_server --socket <path> --response <json file>\n');
  process.exit(2);
}
const response = JSON.parse(readFileSync(values.response, 'utf8')) as object;
const { runtimeService } = loadCriServices();
const server = new grpc.Server();
const unimplemented: grpc.UntypedHandleCall = (_call: unknown, callback: grpc.sendUnaryData<unknown>) =>
  callback({ code: grpc.status.UNIMPLEMENTED, details: 'reference server' }, null);
const handlers: grpc.UntypedServiceImplementation = {};
for (const name of Object.keys(runtimeService)) handlers[name] = unimplemented;
handlers.ListPodSandbox = (_call: unknown, callback: grpc.sendUnaryData<object>) => callback(null, response);
server.addService(runtimeService as unknown as grpc.ServiceDefinition, handlers);
server.bindAsync(`unix://${values.socket}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) {
    process.stderr.write(`cannot listen on ${values.socket}: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write('ready\n');
});
// The bench holds our stdin: when it goes (done, or killed), so do we.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
