import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';

const RUN = fileURLToPath(new URL('../bench/run.ts', import.meta.url));

/** `node --import tsx bench/run.ts ...args` to its end, bounded to 30 s. */
function bench(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, ['--import', 'tsx', RUN, ...args], { timeout: 30000 }, (err, stdout, stderr) => {
      done({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

describe('npm run bench -- --help', () => {
  test('prints the options and exits 0 without starting a run', async () => {
    const res = await bench(['--help']);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^Usage: npm run bench -- \[options\]\n/);
    for (const option of ['--quick', '--only', '--watchers', '--workloads', '--concurrency', '--out']) assert.match(res.stdout, new RegExp(`\n  ${option}\\b`));
    assert.equal(res.stderr, '');
  });

  test('an unknown option, or one without its value, exits 2 with one line', async () => {
    for (const [args, line] of [
      [['--bogus'], 'bench: unknown option "--bogus" (see npm run bench -- --help)\n'],
      [['--quick', '--out'], 'bench: --out needs a value (FILE)\n'],
    ] as const) {
      const res = await bench(args);
      assert.equal(res.code, 2);
      assert.equal(res.stderr, line);
      assert.equal(res.stdout, '');
    }
  });
});
