// hpack.js ships no types; vmlet uses only its streaming decompressor.
declare module 'hpack.js' {
  import type { Duplex } from 'node:stream';
  interface DecodedHeader {
    name: string;
    value: string;
    neverIndex: boolean;
  }
  interface Decompressor extends Duplex {
    execute(cb?: (err: unknown) => void): void;
    read(): DecodedHeader | null;
    updateTableSize(size: number): void;
  }
  const hpack: {
    decompressor: { create(options: { table: { maxSize: number } }): Decompressor };
  };
  export default hpack;
}
