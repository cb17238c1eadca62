/**
 * Certificates for the TLS suites, made with the system's openssl (Debian's
 * `openssl` package) into a directory the caller owns (usually `tempDir()`):
 * a CA, a server certificate for 127.0.0.1/localhost (also good as a client
 * certificate, as etcd members use theirs for peer connections), a client
 * certificate, a second CA with its own client and server certificates (the
 * "wrong CA" cases), and expired server and client certificates signed by
 * the right CA. EC P-256 keys: quick to make.
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** A certificate and its key, as PEM file paths. */
export interface CertPair {
  readonly cert: string;
  readonly key: string;
}

/** Every file the TLS suites use. */
export interface TlsFixture {
  readonly dir: string;
  /** The CA every "good" certificate is signed by. */
  readonly ca: string;
  /** CN=etcd-test-server, SAN 127.0.0.1, ::1 and localhost; serverAuth and clientAuth. Signed by `ca`. */
  readonly server: CertPair;
  /** CN=etcd-test-client; clientAuth. Signed by `ca`. */
  readonly client: CertPair;
  /** Another CA, trusted by nobody. */
  readonly otherCa: string;
  /** Like `server`, signed by `otherCa`. */
  readonly otherServer: CertPair;
  /** Like `client`, signed by `otherCa`. */
  readonly otherClient: CertPair;
  /** Like `server`, signed by `ca`, valid from 2020-01-01 to 2020-01-02. */
  readonly expiredServer: CertPair;
  /** Like `client`, signed by `ca`, valid from 2020-01-01 to 2020-01-02. */
  readonly expiredClient: CertPair;
}

function openssl(args: readonly string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: 20000 }, (err, _stdout, stderr) => {
      if (err === null) resolve();
      else reject(new Error(`openssl ${args.join(' ')} failed: ${stderr || err.message}`));
    });
  });
}

/** `YYYYMMDDHHMMSSZ`, the form `openssl ca -startdate/-enddate` reads. */
function asn1Time(d: Date): string {
  return `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

/** A CA: self-signed, CA:true, with the files `openssl ca` needs beside it. */
async function makeCa(dir: string, name: string): Promise<string> {
  const caDir = join(dir, name);
  await mkdir(join(caDir, 'issued'), { recursive: true });
  await writeFile(join(caDir, 'index.txt'), '');
  await writeFile(join(caDir, 'serial'), `${Date.now().toString(16).padStart(16, '0')}\n`);
  await writeFile(
    join(caDir, 'ca.cnf'),
    [
      '[ca]',
      'default_ca = this_ca',
      '[this_ca]',
      `database = ${join(caDir, 'index.txt')}`,
      `new_certs_dir = ${join(caDir, 'issued')}`,
      `serial = ${join(caDir, 'serial')}`,
      'default_md = sha256',
      'policy = any_subject',
      'unique_subject = no',
      'copy_extensions = none',
      '[any_subject]',
      'commonName = supplied',
      '[req]',
      'distinguished_name = dn',
      '[dn]',
      '[ca_ext]',
      'basicConstraints = critical, CA:true',
      'keyUsage = critical, keyCertSign, cRLSign',
      'subjectKeyIdentifier = hash',
      '',
    ].join('\n'),
  );
  await openssl(
    [
      'req', '-x509', '-new', '-nodes',
      '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
      '-keyout', 'ca.key', '-out', 'ca.crt',
      '-subj', `/CN=${name}`, '-days', '30',
      '-config', 'ca.cnf', '-extensions', 'ca_ext',
    ],
    caDir,
  );
  return caDir;
}

/** A leaf certificate signed by the CA in `caDir`, valid over [from, to]. */
async function issue(
  caDir: string,
  name: string,
  cn: string,
  usage: 'server' | 'client',
  from: Date,
  to: Date,
): Promise<CertPair> {
  const ext = join(caDir, `${name}.ext`);
  await writeFile(
    ext,
    [
      '[leaf]',
      'basicConstraints = critical, CA:false',
      'keyUsage = critical, digitalSignature, keyEncipherment',
      usage === 'server' ? 'extendedKeyUsage = serverAuth, clientAuth' : 'extendedKeyUsage = clientAuth',
      ...(usage === 'server' ? ['subjectAltName = IP:127.0.0.1, IP:::1, DNS:localhost'] : []),
      '',
    ].join('\n'),
  );
  const key = join(caDir, `${name}.key`);
  const cert = join(caDir, `${name}.crt`);
  await openssl(
    ['req', '-new', '-nodes', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-keyout', key, '-out', `${name}.csr`, '-subj', `/CN=${cn}`],
    caDir,
  );
  await openssl(
    [
      'ca', '-batch', '-notext', '-config', 'ca.cnf',
      '-cert', 'ca.crt', '-keyfile', 'ca.key',
      '-in', `${name}.csr`, '-out', cert,
      '-startdate', asn1Time(from), '-enddate', asn1Time(to),
      '-extfile', ext, '-extensions', 'leaf',
    ],
    caDir,
  );
  return { cert, key };
}

/** Makes every certificate of {@link TlsFixture} under `dir` (about a second). */
export async function makeTlsFixture(dir: string): Promise<TlsFixture> {
  const [good, other] = await Promise.all([makeCa(dir, 'test-ca'), makeCa(dir, 'other-ca')]);
  const from = new Date(Date.now() - 3600_000);
  const to = new Date(Date.now() + 2 * 86400_000);
  const pastFrom = new Date('2020-01-01T00:00:00Z');
  const pastTo = new Date('2020-01-02T00:00:00Z');
  // `openssl ca` keeps a database per CA: one at a time per CA, the two CAs side by side.
  const [[server, client, expiredServer, expiredClient], [otherServer, otherClient]] = await Promise.all([
    (async () => [
      await issue(good, 'server', 'etcd-test-server', 'server', from, to),
      await issue(good, 'client', 'etcd-test-client', 'client', from, to),
      await issue(good, 'expired-server', 'etcd-test-expired-server', 'server', pastFrom, pastTo),
      await issue(good, 'expired-client', 'etcd-test-expired-client', 'client', pastFrom, pastTo),
    ])(),
    (async () => [
      await issue(other, 'server', 'etcd-test-other-server', 'server', from, to),
      await issue(other, 'client', 'etcd-test-other-client', 'client', from, to),
    ])(),
  ]);
  return {
    dir,
    ca: join(good, 'ca.crt'),
    server,
    client,
    otherCa: join(other, 'ca.crt'),
    otherServer,
    otherClient,
    expiredServer,
    expiredClient,
  };
}
