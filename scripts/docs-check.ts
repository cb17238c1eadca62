/**
 * `npm run docs:check`: fails when docs/api/ is not what `npm run docs` would
 * write from the current sources.
 *
 * It builds dist/ (`npm run build`), has API Extractor write the doc model
 * into a temporary directory (the API report in docs/api-report/ is neither
 * checked nor touched here: `npm run api` does that), renders it with
 * api-documenter into another temporary directory and compares that with
 * docs/api/ file by file. Exit 0 when they are the same; exit 1 naming each
 * stale, missing and extra file otherwise.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Extractor, ExtractorConfig } from '@microsoft/api-extractor';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const committed = join(root, 'docs', 'api');
const work = mkdtempSync(join(tmpdir(), 'etcd-v2-proxy-docs-check-'));

function listFiles(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Returns the exit code. */
function check(): number {
  try {
    execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
  } catch {
    process.stderr.write('docs:check: `npm run build` failed (see above)\n');
    return 1;
  }

  // The project's API Extractor settings, with only the doc model written, into `work`.
  const configPath = join(root, 'api-extractor.json');
  const configObject = ExtractorConfig.loadFile(configPath);
  const modelDir = join(work, 'model');
  configObject.apiReport = { ...configObject.apiReport!, enabled: false };
  configObject.dtsRollup = { ...configObject.dtsRollup, enabled: false };
  configObject.docModel = { ...configObject.docModel, enabled: true, apiJsonFilePath: join(modelDir, '<unscopedPackageName>.api.json') };
  const config = ExtractorConfig.prepare({ configObject, configObjectFullPath: configPath, packageJsonFullPath: join(root, 'package.json') });
  const result = Extractor.invoke(config, { localBuild: true });
  if (!result.succeeded) {
    process.stderr.write(`docs:check: API Extractor failed (${result.errorCount} error(s), ${result.warningCount} warning(s))\n`);
    return 1;
  }

  const generated = join(work, 'api');
  execFileSync(join(root, 'node_modules', '.bin', 'api-documenter'), ['markdown', '-i', modelDir, '-o', generated], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'inherit'],
  });

  const want = listFiles(generated);
  const have = listFiles(committed);
  const haveSet = new Set(have);
  const wantSet = new Set(want);
  const stale = want.filter((f) => haveSet.has(f) && !readFileSync(join(generated, f)).equals(readFileSync(join(committed, f))));
  const missing = want.filter((f) => !haveSet.has(f));
  const extra = have.filter((f) => !wantSet.has(f));
  if (stale.length + missing.length + extra.length === 0) {
    process.stdout.write(`docs:check: docs/api is current (${want.length} files)\n`);
    return 0;
  }
  const lines = [
    ...stale.map((f) => `  stale:   docs/api/${f}`),
    ...missing.map((f) => `  missing: docs/api/${f}`),
    ...extra.map((f) => `  extra:   docs/api/${f}`),
  ];
  process.stderr.write(
    `docs:check: docs/api is not current: ${stale.length} stale, ${missing.length} missing, ${extra.length} extra file(s)\n` +
      `${lines.join('\n')}\nRun \`npm run docs\` and commit docs/api.\n`,
  );
  return 1;
}

try {
  process.exitCode = check();
} finally {
  rmSync(work, { recursive: true, force: true });
}
