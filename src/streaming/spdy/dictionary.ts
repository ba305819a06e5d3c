/**
 * The SPDY/3 header compression dictionary (SPDY protocol draft 3, section 2.6.10.1): the preset
 * zlib dictionary of both header compression contexts of a connection. 1423 bytes.
 */
const PARTS = [
  '\x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\x03',
  'put\x00\x00\x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\x00\x00\x00',
  '\x0eaccept-charset\x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0faccept-langua',
  'ge\x00\x00\x00\raccept-ranges\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\x00',
  '\rauthorization\x00\x00\x00\rcache-control\x00\x00\x00\nconnection\x00\x00\x00',
  '\x0ccontent-base\x00\x00\x00\x10content-encoding\x00\x00\x00\x10content-langua',
  'ge\x00\x00\x00\x0econtent-length\x00\x00\x00\x10content-location\x00\x00\x00\x0b',
  'content-md5\x00\x00\x00\rcontent-range\x00\x00\x00\x0ccontent-type\x00\x00\x00',
  '\x04date\x00\x00\x00\x04etag\x00\x00\x00\x06expect\x00\x00\x00\x07expires\x00\x00',
  '\x00\x04from\x00\x00\x00\x04host\x00\x00\x00\x08if-match\x00\x00\x00\x11if-mod',
  'ified-since\x00\x00\x00\rif-none-match\x00\x00\x00\x08if-range\x00\x00\x00\x13',
  'if-unmodified-since\x00\x00\x00\rlast-modified\x00\x00\x00\x08location\x00\x00',
  '\x00\x0cmax-forwards\x00\x00\x00\x06pragma\x00\x00\x00\x12proxy-authenticate\x00',
  '\x00\x00\x13proxy-authorization\x00\x00\x00\x05range\x00\x00\x00\x07referer\x00',
  '\x00\x00\x0bretry-after\x00\x00\x00\x06server\x00\x00\x00\x02te\x00\x00\x00\x07',
  'trailer\x00\x00\x00\x11transfer-encoding\x00\x00\x00\x07upgrade\x00\x00\x00\nu',
  'ser-agent\x00\x00\x00\x04vary\x00\x00\x00\x03via\x00\x00\x00\x07warning\x00\x00',
  '\x00\x10www-authenticate\x00\x00\x00\x06method\x00\x00\x00\x03get\x00\x00\x00\x06',
  'status\x00\x00\x00\x06200 OK\x00\x00\x00\x07version\x00\x00\x00\x08HTTP/1.1\x00',
  '\x00\x00\x03url\x00\x00\x00\x06public\x00\x00\x00\nset-cookie\x00\x00\x00\nkee',
  'p-alive\x00\x00\x00\x06origin1001012012022052063003023033043053063074024054064',
  '07408409410411412413414415416417502504505203 Non-Authoritative Information204 ',
  'No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404',
  ' Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJ',
  'an Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, F',
  'ri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/x',
  'ml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,',
  'deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.',
];

export const SPDY3_DICTIONARY: Buffer = Buffer.from(PARTS.join(''), 'latin1');
