/**
 * The TLS, CORS and metrics options are checked before anything starts,
 * with messages naming the option. No etcd needed: nothing is contacted.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { ClusterResolver, createProxy, EndpointBalancer, InvalidOptionError, ProxyMetrics, V2ProxyHandler } from '../src/index.js';
import type { CreateProxyOptions } from '../src/index.js';
import { makeTlsFixture } from './integration/tls-certs.js';
import type { TlsFixture } from './integration/tls-certs.js';

/** Nothing listens on port 1: the options must fail before anything is asked. */
const base: CreateProxyOptions = { initialCluster: 'a=http://127.0.0.1:1', listenClientUrls: ['http://127.0.0.1:0'], startTimeout: 200 };

async function rejectsOption(options: CreateProxyOptions, option: string, message: string | RegExp): Promise<void> {
  await assert.rejects(createProxy({ ...base, ...options }), (err: Error) => {
    assert.ok(err instanceof InvalidOptionError, `${err.name}: ${err.message}`);
    assert.equal(err.option, option);
    if (typeof message === 'string') assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  });
}

function throwsOption(fn: () => unknown, option: string, message: RegExp): void {
  assert.throws(fn, (err: Error) => {
    assert.ok(err instanceof InvalidOptionError, `${err.name}: ${err.message}`);
    assert.equal(err.option, option);
    assert.match(err.message, message);
    return true;
  });
}

describe('TLS options are checked at once, naming the option', () => {
  let dir: string;
  let certs: TlsFixture;
  let notPem: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'etcd-v2-proxy-tls-options-'));
    certs = await makeTlsFixture(dir);
    notPem = join(dir, 'not-pem.txt');
    await writeFile(notPem, 'hello\n');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('an https:// listen URL needs certFile and keyFile', async () => {
    await rejectsOption(
      { listenClientUrls: ['https://127.0.0.1:0'] },
      'certFile',
      'invalid option certFile: an https:// listen URL needs certFile and keyFile (--cert-file, --key-file)',
    );
    await rejectsOption(
      { listenClientUrls: ['https://127.0.0.1:0'], certFile: certs.server.cert },
      'keyFile',
      'invalid option keyFile: an https:// listen URL needs certFile and keyFile (--cert-file, --key-file)',
    );
  });

  it('clientCertAuth needs an https:// listener and a trustedCaFile', async () => {
    await rejectsOption(
      { clientCertAuth: true },
      'clientCertAuth',
      'invalid option clientCertAuth: no listenClientUrls entry is https://, so no client would be asked for a certificate',
    );
    await rejectsOption(
      { listenClientUrls: ['https://127.0.0.1:0'], certFile: certs.server.cert, keyFile: certs.server.key, clientCertAuth: true },
      'trustedCaFile',
      "invalid option trustedCaFile: clientCertAuth needs trustedCaFile: the CA that signs the clients' certificates",
    );
    await rejectsOption({ listenClientUrls: ['https://127.0.0.1:0'], certFile: certs.server.cert, keyFile: certs.server.key, clientCertAuth: 'yes' as unknown as boolean }, 'clientCertAuth', 'invalid option clientCertAuth: expected true or false, got "yes"');
  });

  it('a certificate without its key, or the other way round, for the cluster side', async () => {
    await rejectsOption({ certFile: certs.client.cert }, 'keyFile', 'invalid option keyFile: certFile is given without keyFile: give both or neither');
    await rejectsOption({ peerKeyFile: certs.client.key }, 'peerCertFile', 'invalid option peerCertFile: peerKeyFile is given without peerCertFile: give both or neither');
  });

  it('files that cannot be read, are not PEM, or a key of another certificate', async () => {
    await rejectsOption({ peerTrustedCaFile: join(dir, 'absent.crt') }, 'peerTrustedCaFile', /^invalid option peerTrustedCaFile: cannot read ".*absent\.crt": ENOENT/);
    await rejectsOption({ peerCertFile: notPem, peerKeyFile: certs.client.key }, 'peerCertFile', /holds no PEM certificate/);
    await rejectsOption({ peerCertFile: certs.client.cert, peerKeyFile: certs.server.key }, 'peerKeyFile', 'invalid option peerKeyFile: peerKeyFile is not the key of peerCertFile');
    await rejectsOption(
      { listenClientUrls: ['https://127.0.0.1:0'], certFile: certs.server.cert, keyFile: certs.client.key },
      'keyFile',
      'invalid option keyFile: keyFile is not the key of certFile',
    );
    await rejectsOption({ insecureSkipVerify: 1 as unknown as boolean }, 'insecureSkipVerify', 'invalid option insecureSkipVerify: expected true or false, got 1');
  });

  it('the classes check their tls option the same way', () => {
    throwsOption(() => new EndpointBalancer({ tls: { certFile: certs.client.cert } }), 'tls.keyFile', /tls\.certFile is given without tls\.keyFile/);
    throwsOption(() => new ClusterResolver({ peerUrls: ['https://127.0.0.1:1'], tls: 'x' as never }), 'tls', /expected an object of TLS files, got "x"/);
    throwsOption(() => new ClusterResolver({ peerUrls: ['https://127.0.0.1:1'], tls: { trustedCaFile: '' } }), 'tls.trustedCaFile', /expected a file path, got ""/);
    const ok = new EndpointBalancer({ endpoints: ['https://127.0.0.1:1'], tls: { certFile: certs.client.cert, keyFile: certs.client.key, trustedCaFile: certs.ca } });
    assert.equal(ok.endpoints.length, 1);
    ok.close();
  });
});

describe('cors option', () => {
  const balancer = new EndpointBalancer();
  after(() => balancer.close());

  it('takes "*", a comma-separated string or an array of origins', () => {
    for (const cors of ['*', 'https://app.example.com', 'http://a.example:8080, https://b.example', ['https://a.example', 'http://b.example:81']]) {
      new V2ProxyHandler({ balancer, cors }).close();
    }
  });

  it('refuses what is not an origin, naming cors', async () => {
    throwsOption(() => new V2ProxyHandler({ balancer, cors: 'app.example.com' }), 'cors', /"app\.example\.com" is not an origin: expected "\*" or scheme:\/\/host\[:port\]/);
    throwsOption(() => new V2ProxyHandler({ balancer, cors: 'https://a.example/path' }), 'cors', /"https:\/\/a\.example\/path" is not an origin/);
    throwsOption(() => new V2ProxyHandler({ balancer, cors: 7 as never }), 'cors', /expected "\*" or a comma-separated list of origins/);
    await rejectsOption({ cors: 'ftp://a.example' }, 'cors', /"ftp:\/\/a\.example" is not an origin/);
  });
});

describe('metrics options', () => {
  it('a registry that already has the metrics is refused, naming metricsRegistry; close() frees it', async () => {
    const registry = new Registry();
    const balancer = new EndpointBalancer();
    const handler = new V2ProxyHandler({ balancer });
    const first = new ProxyMetrics({ handler, registry });
    throwsOption(() => new ProxyMetrics({ handler, registry }), 'registry', /already has etcd_proxy_requests_total, .*: use one ProxyMetrics per registry/);
    await rejectsOption({ metricsRegistry: registry }, 'metricsRegistry', /^invalid option metricsRegistry: already has etcd_proxy_requests_total/);
    await rejectsOption({ metricsRegistry: {} as never }, 'metricsRegistry', 'invalid option metricsRegistry: expected a prom-client Registry, got object');
    first.close();
    assert.equal(registry.getSingleMetric('etcd_proxy_requests_total'), undefined);
    new ProxyMetrics({ handler, registry }).close();
    handler.close();
    balancer.close();
  });
});
