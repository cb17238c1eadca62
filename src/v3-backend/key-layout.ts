/**
 * Where the v2 tree lives in the v3 key space: etcd 3.4's
 * `--experimental-enable-v2v3 P` layout, so that data written by etcd's
 * emulation reads here and the reverse.
 *
 * etcd's v2 HTTP layer puts every `/v2/keys` path under its store's `/1`
 * namespace before the store sees it (`/0` held the membership), and the
 * emulation keeps that: the v2 key `/a/b` is the store path `/1/a/b`. So:
 *
 * - a file `/a/b` is the key `P/003/k//1/a/b` (the depth of the store path,
 *   the number of '/' in it, in at least three digits);
 * - a directory is the same key with a trailing '/': `P/003/k//1/a/b/`;
 * - the v2 root is `/1`, which has no key;
 * - the children of a directory `D` all start with `P/<depth+1>/k//1D/`
 *   (the root's with `P/002/k//1/`), so one range lists them; a whole
 *   subtree is one such prefix per level below `D`;
 * - `P/act` holds the v2 action name of the latest write.
 *
 * Depths in this API are v2 depths (`/a/b` is 2); the key holds one more.
 *
 * Names are stored as their UTF-8 bytes, unescaped (a space, '%', any
 * unicode character is itself in the key), as etcd's emulation stores them.
 */

/** A layout key read back. */
export interface DecodedKey {
  /** The v2 path (`/a/b`). */
  readonly path: string;
  /** True for a directory key (ending with '/'). */
  readonly dir: boolean;
  /** The v2 depth of the path (the key's digits hold one more, for the `/1` namespace). */
  readonly depth: number;
}

/** etcd's encoding of a depth: at least three digits. */
function pad3(n: number): string {
  return String(n).padStart(3, '0');
}

/** etcd's v2 store namespace of the keys API: v2 path `/a` is store path `/1/a`. */
const KEYS_NAMESPACE = '/1';

/**
 * The key layout of one prefix.
 * @public
 */
export class KeyLayout {
  /** The v3 key prefix (etcd's emulation flag value), e.g. `/v2`. */
  readonly prefix: string;
  /** `${prefix}/act`: the v2 action of the latest write. */
  readonly actionKey: Buffer;
  private readonly head: string;

  constructor(prefix = '/v2') {
    this.prefix = prefix;
    this.head = `${prefix}/`;
    this.actionKey = Buffer.from(`${prefix}/act`);
  }

  /**
   * A v2 path cleaned as etcd cleans it (Go's `path.Clean(path.Join("/", p))`):
   * leading '/', no empty, `.` or `..` components, no trailing '/'. The root is `/`.
   */
  static normalize(p: string): string {
    const out: string[] = [];
    for (const part of p.split('/')) {
      if (part === '' || part === '.') continue;
      if (part === '..') out.pop();
      else out.push(part);
    }
    return `/${out.join('/')}`;
  }

  /** The depth of a normalised path: the number of '/' in it; the root (which has no key) is 0. */
  static depth(p: string): number {
    if (p === '/') return 0;
    let n = 0;
    for (let i = 0; i < p.length; i++) if (p.charCodeAt(i) === 47) n++;
    return n;
  }

  /** The directory holding a normalised path (`/a/b` -> `/a`, `/a` -> `/`). */
  static parent(p: string): string {
    const i = p.lastIndexOf('/');
    return i <= 0 ? '/' : p.slice(0, i);
  }

  /** The last component of a normalised path (`/a/b` -> `b`; the root: ''). */
  static basename(p: string): string {
    return p.slice(p.lastIndexOf('/') + 1);
  }

  /** The strict ancestors of a normalised path, root excluded, shallowest first (`/a/b/c` -> `/a`, `/a/b`). */
  static ancestors(p: string): string[] {
    const out: string[] = [];
    for (let i = p.indexOf('/', 1); i > 0; i = p.indexOf('/', i + 1)) out.push(p.slice(0, i));
    return out;
  }

  /** True when `a` is a strict ancestor of `b` by path components (`/foo` is not one of `/foobar`). */
  static isAncestor(a: string, b: string): boolean {
    if (a === b) return false;
    if (a === '/') return b.startsWith('/');
    return b.startsWith(a) && b.charCodeAt(a.length) === 47;
  }

  /** The key of a file node (`/a/b` -> `P/003/k//1/a/b`). Not for the root. */
  fileKey(p: string): Buffer {
    return Buffer.from(`${this.head}${pad3(KeyLayout.depth(p) + 1)}/k/${KEYS_NAMESPACE}${p}`);
  }

  /** The key of a directory node: the file key and '/' (`P/003/k//1/a/b/`). Not for the root. */
  dirKey(p: string): Buffer {
    return Buffer.from(`${this.head}${pad3(KeyLayout.depth(p) + 1)}/k/${KEYS_NAMESPACE}${p}/`);
  }

  /**
   * The prefix of the nodes of directory `dir` that are at v2 depth `level`
   * (`level` > depth(dir)): `P/<level+1>/k//1<dir>/`. `level = depth(dir) + 1`
   * gives its children; each deeper level one more generation.
   */
  levelPrefix(dir: string, level: number): Buffer {
    return Buffer.from(`${this.head}${pad3(level + 1)}/k/${KEYS_NAMESPACE}${dir === '/' ? '' : dir}/`);
  }

  /** The prefix of the children of directory `dir` (one level below). */
  childrenPrefix(dir: string): Buffer {
    return this.levelPrefix(dir, KeyLayout.depth(dir) + 1);
  }

  /**
   * The range holding every file and directory key of the layout (all depths),
   * not the action key nor `P/auth/...`: `[P/0, P/:)`.
   */
  nodeRange(): { key: Buffer; rangeEnd: Buffer } {
    return { key: Buffer.from(`${this.head}0`), rangeEnd: Buffer.from(`${this.head}:`) };
  }

  /** The end of the range of keys starting with `prefix` (etcd's `WithPrefix`). */
  static prefixEnd(prefix: Buffer): Buffer {
    const end = Buffer.from(prefix);
    for (let i = end.length - 1; i >= 0; i--) {
      if (end[i]! < 0xff) {
        end[i] = end[i]! + 1;
        return end.subarray(0, i + 1);
      }
    }
    return Buffer.from([0]);
  }

  /**
   * A key read back: its v2 path and kind, or undefined for a key outside the
   * layout (the action key, auth data, anything another program wrote, a
   * path that is not clean or whose depth disagrees with its digits).
   */
  decode(key: Buffer | string): DecodedKey | undefined {
    const text = typeof key === 'string' ? key : key.toString('utf8');
    if (!text.startsWith(this.head)) return undefined;
    const rest = text.slice(this.head.length);
    const slash = rest.indexOf('/');
    if (slash < 3 || !rest.startsWith('/k//', slash)) return undefined;
    const digits = rest.slice(0, slash);
    if (!/^[0-9]+$/.test(digits)) return undefined;
    let p = rest.slice(slash + 3);
    if (!p.startsWith(`${KEYS_NAMESPACE}/`)) return undefined;
    p = p.slice(KEYS_NAMESPACE.length);
    const dir = p.length > 1 && p.endsWith('/');
    if (dir) p = p.slice(0, -1);
    if (p === '/' || KeyLayout.normalize(p) !== p) return undefined;
    const depth = KeyLayout.depth(p);
    if (depth + 1 !== Number(digits)) return undefined;
    return { path: p, dir, depth };
  }

  /** The v2 depth of a layout key (`P/004/k//1/a/b/c` -> 3), or undefined. */
  depthOfKey(key: Buffer): number | undefined {
    const text = key.toString('latin1');
    if (!text.startsWith(this.head)) return undefined;
    const m = /^([0-9]+)\/k\/\/1\//.exec(text.slice(this.head.length));
    return m === null ? undefined : Number(m[1]) - 1;
  }
}
