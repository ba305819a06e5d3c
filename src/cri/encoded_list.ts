/**
 * List responses without re-encoding unchanged records. A List*Response whose only field is
 * `repeated Item items = 1` encodes as the concatenation of each item's framed bytes (tag, length,
 * item), so each record's framed bytes are cached until the record object changes (records are
 * replaced, never mutated, when they change) and a response is one Buffer.concat.
 */
import type * as grpc from '@grpc/grpc-js';

/** A response body already in protobuf form; the server's serializer passes it through. */
export class EncodedMessage {
  constructor(readonly bytes: Buffer) {}
}

/** Wraps a method's serializer so handlers may answer with an EncodedMessage. */
export function acceptEncoded(method: grpc.MethodDefinition<any, any>): grpc.MethodDefinition<any, any> {
  const serialize = method.responseSerialize;
  return { ...method, responseSerialize: (value: unknown) => (value instanceof EncodedMessage ? value.bytes : serialize(value)) };
}

export class RepeatedFieldEncoder<R extends object> {
  private readonly cache = new WeakMap<R, Buffer>();

  /**
   * `serialize` is the response type's serializer; `field` the repeated field's name; `toItem`
   * the record → item conversion.
   */
  constructor(
    private readonly serialize: (value: object) => Buffer,
    private readonly field: string,
    private readonly toItem: (record: R) => object,
  ) {}

  encode(records: readonly R[]): EncodedMessage {
    const parts = records.map((r) => {
      let framed = this.cache.get(r);
      if (!framed) {
        // A one-item response is exactly that item's framed bytes.
        framed = this.serialize({ [this.field]: [this.toItem(r)] });
        this.cache.set(r, framed);
      }
      return framed;
    });
    return new EncodedMessage(Buffer.concat(parts));
  }
}
