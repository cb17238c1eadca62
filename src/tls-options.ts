import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { TLSSocket, TlsOptions } from 'node:tls';
import { createSecureContext } from 'node:tls';
import { InvalidOptionError } from './errors.js';
import { describe } from './validate-options.js';

/**
 * TLS settings, read from PEM files as etcd's flags name them, and the
 * messages that say which certificate was wrong when a TLS handshake fails.
 */

/**
 * TLS towards the cluster: what this proxy presents to the members and which
 * CAs their certificates must chain to. Used for `https://` peer URLs (the
 * `GET /members` requests) and `https://` client URLs (forwarded requests).
 * Files are read once, when the object that takes them is created.
 * @public
 */
export interface UpstreamTlsOptions {
  /**
   * PEM certificate (chain) this proxy presents to members that ask for one
   * (etcd's `--client-cert-auth` / `--peer-client-cert-auth` on the members).
   * Give it with `keyFile`. etcd flag: `--peer-cert-file` for peers,
   * `--cert-file` for client URLs. Default: none (no client certificate).
   */
  certFile?: string;
  /** PEM private key of `certFile`. etcd flag: `--peer-key-file` / `--key-file`. Default: none. */
  keyFile?: string;
  /**
   * PEM CA bundle the members' certificates must chain to. etcd flag:
   * `--peer-trusted-ca-file` / `--trusted-ca-file`. Default: Node's bundled
   * public CAs.
   */
  trustedCaFile?: string;
  /**
   * Accept any certificate from the members, unverified: anyone on the path
   * can then read and change the traffic. For tests and first setups only.
   * Not an etcd member flag (etcdctl calls it `--insecure-skip-tls-verify`).
   * Default: false (certificates are verified, host names included).
   */
  insecureSkipVerify?: boolean;
}

/** {@link UpstreamTlsOptions} read and checked: what node:https takes, and what the messages need. */
export interface UpstreamTls {
  readonly ca: Buffer | undefined;
  readonly cert: Buffer | undefined;
  readonly key: Buffer | undefined;
  readonly rejectUnauthorized: boolean;
  readonly certFile: string | undefined;
  readonly trustedCaFile: string | undefined;
  /** When this proxy's own certificate stops being valid. */
  readonly certValidTo: Date | undefined;
}

/** Option names used in error messages, e.g. `{ certFile: 'peerCertFile', ... }` or `tls.certFile`. */
export interface TlsOptionNames {
  readonly certFile: string;
  readonly keyFile: string;
  readonly trustedCaFile: string;
  readonly insecureSkipVerify: string;
}

/** Names for an option object called `name` (`tls` gives `tls.certFile`...). */
export function nestedNames(name: string): TlsOptionNames {
  return {
    certFile: `${name}.certFile`,
    keyFile: `${name}.keyFile`,
    trustedCaFile: `${name}.trustedCaFile`,
    insecureSkipVerify: `${name}.insecureSkipVerify`,
  };
}

const resolved = new WeakMap<object, UpstreamTls>();

/**
 * Reads and checks an {@link UpstreamTlsOptions} (`undefined` stays
 * `undefined`). The same object is read once, however many endpoints use it.
 * @throws {@link InvalidOptionError} naming the option: a file that cannot be
 *   read or is not PEM, a certificate without its key or the other way round,
 *   a key that does not match its certificate.
 */
export function upstreamTlsOption(value: unknown, names: TlsOptionNames | string): UpstreamTls | undefined {
  if (value === undefined) return undefined;
  const n = typeof names === 'string' ? nestedNames(names) : names;
  if (value === null || typeof value !== 'object') {
    throw new InvalidOptionError(n.certFile.replace(/\.certFile$/, ''), `expected an object of TLS files, got ${describe(value)}`);
  }
  const cached = resolved.get(value);
  if (cached !== undefined) return cached;
  const o = value as UpstreamTlsOptions;
  const certFile = pathOption(n.certFile, o.certFile);
  const keyFile = pathOption(n.keyFile, o.keyFile);
  const trustedCaFile = pathOption(n.trustedCaFile, o.trustedCaFile);
  if (o.insecureSkipVerify !== undefined && typeof o.insecureSkipVerify !== 'boolean') {
    throw new InvalidOptionError(n.insecureSkipVerify, `expected true or false, got ${describe(o.insecureSkipVerify)}`);
  }
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw certFile === undefined
      ? new InvalidOptionError(n.certFile, `${n.keyFile} is given without ${n.certFile}: give both or neither`)
      : new InvalidOptionError(n.keyFile, `${n.certFile} is given without ${n.keyFile}: give both or neither`);
  }
  const cert = certFile === undefined ? undefined : readPem(n.certFile, certFile, 'CERTIFICATE');
  const key = keyFile === undefined ? undefined : readPem(n.keyFile, keyFile, 'PRIVATE KEY');
  const ca = trustedCaFile === undefined ? undefined : readPem(n.trustedCaFile, trustedCaFile, 'CERTIFICATE');
  checkContext(n, { cert, key, ca });
  const tls: UpstreamTls = {
    ca,
    cert,
    key,
    rejectUnauthorized: o.insecureSkipVerify !== true,
    certFile,
    trustedCaFile,
    certValidTo: cert === undefined ? undefined : validTo(cert),
  };
  resolved.set(value, tls);
  return tls;
}

/** True when `value` sets a client certificate or key (etcd's `TLSInfo.Empty()` is the opposite: it looks at those two only). */
export function hasClientCertificate(value: UpstreamTlsOptions | undefined): boolean {
  return value?.certFile !== undefined || value?.keyFile !== undefined;
}

/** The node:https / node:tls options of an {@link UpstreamTls}. */
export function tlsConnectOptions(tls: UpstreamTls | undefined): {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized?: boolean;
} {
  if (tls === undefined) return {};
  return {
    ...(tls.ca === undefined ? {} : { ca: tls.ca }),
    ...(tls.cert === undefined ? {} : { cert: tls.cert }),
    ...(tls.key === undefined ? {} : { key: tls.key }),
    rejectUnauthorized: tls.rejectUnauthorized,
  };
}

// Verification failures of the server's certificate, seen by this proxy as a client.
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
]);
const EXPIRED = new Set(['CERT_HAS_EXPIRED', 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED']);

/**
 * True when `err` is a TLS failure that happened before the HTTP request
 * could reach the server: the server's certificate was refused here, or the
 * server refused this proxy's certificate with a TLS alert (with TLS 1.3 that
 * alert arrives after the handshake looks done, but before any request was
 * read). Such a request may go to another endpoint whatever its method.
 */
export function isTlsHandshakeFailure(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === undefined) return false;
  return UNTRUSTED.has(code) || EXPIRED.has(code) || code === 'CERT_NOT_YET_VALID' || code === 'ERR_TLS_CERT_ALTNAME_INVALID' || /^ERR_SSL_.*ALERT/.test(code);
}

/**
 * What went wrong with a TLS connection this proxy made to `server` (a peer
 * or client URL), in words that say which certificate was at fault: the
 * server's from a CA not trusted here (wrong CA), an expired one, this
 * proxy's own refused by the server, or none given where the server wants
 * one. Other errors keep their message.
 */
export function explainTlsFailure(err: Error, tls: UpstreamTls | undefined): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === undefined) return err.message;
  const tag = ` [${code}]`;
  if (UNTRUSTED.has(code)) {
    const cas = tls?.trustedCaFile === undefined ? "Node's bundled public CAs (no trusted CA file is set)" : tls.trustedCaFile;
    return `TLS: the server's certificate is not signed by a trusted CA (wrong CA?): trusted: ${cas}; ${err.message}${tag}`;
  }
  if (code === 'CERT_HAS_EXPIRED') return `TLS: the server's certificate has expired${tag}`;
  if (code === 'CERT_NOT_YET_VALID') return `TLS: the server's certificate is not valid yet (check the clocks)${tag}`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `TLS: the server's certificate is not for this host: ${err.message}${tag}`;
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG') {
    return `TLS: the server did not answer with TLS (an http:// server behind an https:// URL?)${tag}`;
  }
  if (/^ERR_SSL_.*ALERT/.test(code)) {
    if (tls?.cert === undefined) {
      return `TLS: missing client certificate: the server refused the connection and this proxy has no client certificate to present (set one)${tag}`;
    }
    if (tls.certValidTo !== undefined && tls.certValidTo.getTime() < Date.now()) {
      return `TLS: the server refused this proxy's client certificate ${tls.certFile}: it expired on ${tls.certValidTo.toISOString()}${tag}`;
    }
    if (EXPIRED.has(code)) return `TLS: the server refused this proxy's client certificate ${tls.certFile} as expired${tag}`;
    if (code === 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA') {
      return `TLS: the server refused this proxy's client certificate ${tls.certFile}: not signed by a CA the server trusts (wrong CA?)${tag}`;
    }
    return `TLS: the server refused this proxy's client certificate ${tls.certFile} (not signed by a CA the server trusts (wrong CA?), or not made for client authentication)${tag}`;
  }
  return err.message;
}

/** The listener side: what `https.createServer` gets, read from etcd's `--cert-file`-style options. */
export interface ListenerTlsFiles {
  certFile?: unknown;
  keyFile?: unknown;
  trustedCaFile?: unknown;
  clientCertAuth?: unknown;
}

/** The checked listener settings: the server options and whether clients must show a certificate. */
export interface ListenerTls {
  readonly serverOptions: TlsOptions;
  readonly clientCertAuth: boolean;
}

/**
 * Reads `certFile`/`keyFile` (both needed) and `trustedCaFile`. As etcd does,
 * a trusted CA file makes the listener require a client certificate signed
 * by it, `clientCertAuth` or not.
 * @throws {@link InvalidOptionError} naming the option.
 */
export function listenerTlsOption(files: ListenerTlsFiles): ListenerTls {
  const certFile = pathOption('certFile', files.certFile);
  const keyFile = pathOption('keyFile', files.keyFile);
  const trustedCaFile = pathOption('trustedCaFile', files.trustedCaFile);
  if (files.clientCertAuth !== undefined && typeof files.clientCertAuth !== 'boolean') {
    throw new InvalidOptionError('clientCertAuth', `expected true or false, got ${describe(files.clientCertAuth)}`);
  }
  if (certFile === undefined) throw new InvalidOptionError('certFile', 'an https:// listen URL needs certFile and keyFile (--cert-file, --key-file)');
  if (keyFile === undefined) throw new InvalidOptionError('keyFile', 'an https:// listen URL needs certFile and keyFile (--cert-file, --key-file)');
  const clientCertAuth = files.clientCertAuth === true || trustedCaFile !== undefined;
  if (clientCertAuth && trustedCaFile === undefined) {
    throw new InvalidOptionError('trustedCaFile', 'clientCertAuth needs trustedCaFile: the CA that signs the clients\' certificates');
  }
  const cert = readPem('certFile', certFile, 'CERTIFICATE');
  const key = readPem('keyFile', keyFile, 'PRIVATE KEY');
  const ca = trustedCaFile === undefined ? undefined : readPem('trustedCaFile', trustedCaFile, 'CERTIFICATE');
  checkContext({ certFile: 'certFile', keyFile: 'keyFile', trustedCaFile: 'trustedCaFile', insecureSkipVerify: '' }, { cert, key, ca });
  return {
    clientCertAuth,
    serverOptions: {
      cert,
      key,
      ...(ca === undefined ? {} : { ca }),
      requestCert: clientCertAuth,
      rejectUnauthorized: clientCertAuth,
      // h2 is offered after http/1.1 so that only clients that speak nothing
      // else (gRPC, i.e. etcd v3 clients) get it: createProxy forwards them
      // (or, with v3Clients 'refuse', answers UNIMPLEMENTED) rather than
      // failing their handshake.
      ALPNProtocols: ['http/1.1', 'h2'],
    },
  };
}

/**
 * Why a client's TLS connection to a listener failed, in words: no
 * certificate, one from another CA, an expired one, or another handshake
 * failure. `socket.authorizationError` holds the verification result when
 * node:tls closed the connection over the client's certificate.
 */
export function explainTlsClientError(err: Error, socket: TLSSocket | undefined): { code: string; message: string } {
  const verify = socket?.authorizationError;
  const verifyCode = verify === undefined || verify === null ? undefined : typeof verify === 'string' ? verify : verify.message;
  const code = verifyCode ?? (err as NodeJS.ErrnoException).code ?? 'ERR_TLS';
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') {
    return { code, message: 'missing client certificate: the client sent none and this listener requires one (clientCertAuth)' };
  }
  if (UNTRUSTED.has(code)) return { code, message: `the client's certificate is not signed by the trusted CA (wrong CA?) [${code}]` };
  if (code === 'CERT_HAS_EXPIRED') return { code, message: `the client's certificate has expired [${code}]` };
  if (code === 'CERT_NOT_YET_VALID') return { code, message: `the client's certificate is not valid yet (check the clocks) [${code}]` };
  if (verifyCode !== undefined) return { code, message: `the client's certificate was refused [${code}]` };
  if (code === 'ERR_SSL_HTTP_REQUEST') return { code, message: 'the client spoke plain HTTP to an https:// listener' };
  return { code, message: `TLS handshake failed: ${err.message.split('\n')[0]}` };
}

function pathOption(name: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') throw new InvalidOptionError(name, `expected a file path, got ${describe(value)}`);
  return value;
}

function readPem(name: string, path: string, kind: 'CERTIFICATE' | 'PRIVATE KEY'): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    throw new InvalidOptionError(name, `cannot read ${JSON.stringify(path)}: ${(err as Error).message}`);
  }
  const text = data.toString('latin1');
  if (!text.includes('-----BEGIN') || !text.includes(kind)) {
    throw new InvalidOptionError(name, `${JSON.stringify(path)} holds no PEM ${kind.toLowerCase()} ("-----BEGIN ...${kind}-----")`);
  }
  return data;
}

/** Lets OpenSSL parse the files now, so that a bad file or a key of another certificate fails at start-up, naming the option. */
function checkContext(n: TlsOptionNames, files: { cert: Buffer | undefined; key: Buffer | undefined; ca: Buffer | undefined }): void {
  if (files.ca !== undefined) {
    try {
      createSecureContext({ ca: files.ca });
    } catch (err) {
      throw new InvalidOptionError(n.trustedCaFile, `cannot be used as a CA bundle: ${(err as Error).message}`);
    }
  }
  if (files.cert !== undefined && files.key !== undefined) {
    try {
      createSecureContext({ cert: files.cert, key: files.key });
    } catch (err) {
      const message = (err as Error).message;
      const which = /key values mismatch/i.test(message) ? `${n.keyFile} is not the key of ${n.certFile}` : message;
      throw new InvalidOptionError(/key|mismatch/i.test(message) ? n.keyFile : n.certFile, which);
    }
  }
}

function validTo(cert: Buffer): Date | undefined {
  try {
    return new Date(new X509Certificate(cert).validTo);
  } catch {
    return undefined;
  }
}
