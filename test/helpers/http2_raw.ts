/** A raw HTTP/2 gRPC client over a unix socket, able to send any :authority (as old kubelets do). */
import http2 from 'node:http2';
import net from 'node:net';

export interface RawReply {
  status: number | undefined;
  grpcStatus: string | undefined;
  grpcMessage: string | undefined;
  body: Buffer;
  rstCode: number;
}

export function connectRaw(socketPath: string): http2.ClientHttp2Session {
  return http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
}

/** One unary gRPC call: `message` is the protobuf payload (without the 5-byte gRPC prefix). */
export function rawUnary(session: http2.ClientHttp2Session, path: string, authority: string, message: Buffer): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      ':authority': authority,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const chunks: Buffer[] = [];
    let status: number | undefined;
    let trailers: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => {
      status = h[':status'];
      trailers = { ...h };
    });
    req.on('trailers', (t) => {
      trailers = { ...trailers, ...t };
    });
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('error', () => {}); // reported through rstCode
    req.on('close', () => {
      const framed = Buffer.concat(chunks);
      resolve({
        status,
        grpcStatus: trailers['grpc-status'] as string | undefined,
        grpcMessage: trailers['grpc-message'] as string | undefined,
        body: framed.length >= 5 ? framed.subarray(5, 5 + framed.readUInt32BE(1)) : Buffer.alloc(0),
        rstCode: req.rstCode ?? 0,
      });
    });
    req.on('timeout', () => reject(new Error('timeout')));
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(message.length, 1);
    req.end(Buffer.concat([prefix, message]));
  });
}
