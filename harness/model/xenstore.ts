// The xenstore database as Xen 4.17's C xenstored keeps it: nodes with a value,
// ordered children and permissions; transactions; watches; quotas.
// Sources: tools/xenstore/xenstored_core.c (get_node, do_read, do_write,
// do_mkdir, do_rm, do_get_perms, do_set_perms, is_valid_nodename, perm_for_conn),
// xenstored_transaction.c (generation-based conflict: EAGAIN at commit),
// xenstored_watch.c (do_watch, do_unwatch, fire_watches),
// xenstored_domain.c (quotas, get_domain_path), docs/misc/xenstore.txt,
// xen/include/public/io/xs_wire.h (XENSTORE_*_PATH_MAX).
// Built lazily per domain on first use: nothing runs at import.

export const XENSTORE_ABS_PATH_MAX = 3072;
export const XENSTORE_REL_PATH_MAX = 2048;
/** xenstored defaults (xenstored_core.c): quota_nb_entry_per_domain, quota_max_entry_size,
 *  quota_nb_watch_per_domain, quota_max_transaction. */
export const XS_QUOTA = { entries: 1000, entrySize: 2048, watches: 128, transactions: 10 } as const;

/** One permission: XS_PERM_* letter and domain. */
export interface XsPerm { p: 'n' | 'r' | 'w' | 'b'; id: number }

interface Node {
  value: Uint8Array;
  children: string[];
  perms: XsPerm[];
  gen: number;
}

type Access = 'r' | 'w';

/** A failed operation: the errno name xenstored sends as the XS_ERROR payload. */
export class XsError extends Error {
  constructor(readonly errno: string) { super(errno); }
}

export interface XsWatchEvent { conn: number; path: string; token: string }

interface Tx { id: number; conn: number; nodes: Map<string, Node | null>; seen: Map<string, number> }

/** Whether `ch` is legal in a node name (xenstored_core.c valid_chars). */
function validChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d || c === 0x2f || c === 0x5f || c === 0x40;
}

/**
 * The size of a node's database record, which quota_max_entry_size bounds for a guest
 * (xenstored_core.c write_node_raw, Xen 4.17): struct xs_tdb_record_hdr (24 bytes), 8 per
 * permission, the value, and the children's names each with its NUL.
 */
export function recordSize(n: Pick<Node, 'value' | 'children' | 'perms'>): number {
  return 24 + 8 * n.perms.length + n.value.length + n.children.reduce((s, c) => s + c.length + 1, 0);
}

export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

export class XenStore {
  private nodes = new Map<string, Node>();
  private txs = new Map<number, Tx>();
  private nextTx = 1;
  private watches: Array<{ conn: number; path: string; token: string; rel: boolean }> = [];
  private gen = 0;
  /** Domains that exist (dom0 and those introduced): a permission naming another is ignored. */
  private readonly domains = new Set<number>([0]);
  /** Watch events queued for delivery, in order. */
  readonly events: XsWatchEvent[] = [];

  constructor(readonly privileged: (conn: number) => boolean = (c) => c === 0) {
    this.nodes.set('/', { value: new Uint8Array(0), children: [], perms: [{ p: 'n', id: 0 }], gen: this.gen++ });
  }

  /**
   * The toolstack's tree for a fresh domain, as libxl makes it (tools/libs/light/libxl_create.c
   * libxl__domain_make, then the name, the domid and the store and console nodes of the
   * build; Xen 4.17.7's toolstack answered DIRECTORY with these, in this order): the domain
   * path and what the toolstack keeps are read-only to the domain (roperm: none for 0, read
   * for the domain), what the domain writes is its own (rwperm). Values below the first
   * level (memory targets, cpu availability, store and console details) are left out.
   */
  introduce(domid: number, name: string): void {
    this.domains.add(domid);
    const base = `/local/domain/${domid}`;
    const ro: XsPerm[] = [{ p: 'n', id: 0 }, { p: 'r', id: domid }];
    const rw: XsPerm[] = [{ p: 'n', id: domid }];
    const node = (rel: string, perms: XsPerm[], v = '') => {
      const path = rel ? `${base}/${rel}` : base;
      this.write(0, 0, path, new TextEncoder().encode(v));
      this.setPerms(0, 0, path, perms);
    };
    node('', ro);
    node('vm', ro, `/vm/00000000-0000-0000-0000-${domid.toString(16).padStart(12, '0')}`);
    node('name', ro, name);
    for (const d of ['cpu', 'memory', 'device', 'control']) node(d, ro);
    for (const c of ['shutdown', 'feature-poweroff', 'feature-reboot', 'feature-suspend', 'sysrq']) node(`control/${c}`, rw);
    for (const d of ['data', 'drivers', 'feature', 'attr', 'error']) node(d, rw);
    node('domid', ro, String(domid));
    for (const d of ['store', 'console']) node(d, ro);
  }

  /** xenstored canonicalize + is_valid_nodename: EINVAL for a bad path. */
  canonical(conn: number, p: string): string {
    if (p.startsWith('@')) return p;
    const abs = p.startsWith('/') ? p : `/local/domain/${conn}/${p}`;
    if (abs !== '/' && abs.endsWith('/')) throw new XsError('EINVAL');
    if (abs.includes('//')) throw new XsError('EINVAL');
    for (let i = 0; i < abs.length; i++) if (!validChar(abs.charCodeAt(i))) throw new XsError('EINVAL');
    if (abs.length > XENSTORE_ABS_PATH_MAX) throw new XsError('EINVAL');
    const m = /^\/local\/domain\/(\d{1,5})\//.exec(abs);
    const localOff = m ? m[0].length : 0;
    if (abs.length > localOff + XENSTORE_REL_PATH_MAX) throw new XsError('EINVAL');
    return abs;
  }

  /** perm_for_conn: owner and privileged get everything, else the matching entry or the default. */
  private allowed(conn: number, n: Node, a: Access): boolean {
    if (this.privileged(conn) || n.perms[0].id === conn) return true;
    const e = n.perms.slice(1).find((x) => x.id === conn) ?? n.perms[0];
    return e.p === 'b' || e.p === a;
  }

  private lookup(path: string, tx: Tx | null): Node | undefined {
    if (tx) {
      if (tx.nodes.has(path)) return tx.nodes.get(path) ?? undefined;
      const n = this.nodes.get(path);
      if (!tx.seen.has(path)) tx.seen.set(path, n ? n.gen : -1);
      return n;
    }
    return this.nodes.get(path);
  }

  /** write_node_raw's quota: ENOSPC when a guest would write a record of quota_max_entry_size or more. */
  private checkRecord(conn: number, n: Pick<Node, 'value' | 'children' | 'perms'>): void {
    if (!this.privileged(conn) && recordSize(n) >= XS_QUOTA.entrySize) throw new XsError('ENOSPC');
  }

  private store(path: string, n: Node | null, tx: Tx | null): void {
    if (tx) {
      if (!tx.seen.has(path)) { const o = this.nodes.get(path); tx.seen.set(path, o ? o.gen : -1); }
      tx.nodes.set(path, n);
      return;
    }
    if (n) { n.gen = this.gen++; this.nodes.set(path, n); } else this.nodes.delete(path);
  }

  private tx(conn: number, txId: number): Tx | null {
    if (txId === 0) return null;
    const t = this.txs.get(txId);
    if (!t || t.conn !== conn) throw new XsError('ENOENT');
    return t;
  }

  /** get_node: ENOENT, or EACCES where a missing node's nearest ancestor is not readable. */
  private get(conn: number, path: string, a: Access, tx: Tx | null): Node {
    const n = this.lookup(path, tx);
    if (n) {
      if (!this.allowed(conn, n, a)) throw new XsError('EACCES');
      return n;
    }
    let p = path;
    while (p !== '/') {
      p = parentOf(p);
      const anc = this.lookup(p, tx);
      if (anc) { if (!this.allowed(conn, anc, 'r')) throw new XsError('EACCES'); break; }
    }
    throw new XsError('ENOENT');
  }

  private owned(id: number, tx: Tx | null): number {
    let c = 0;
    for (const [k, n] of this.nodes) if (!tx?.nodes.has(k) && n.perms[0].id === id) c++;
    if (tx) for (const n of tx.nodes.values()) if (n && n.perms[0].id === id) c++;
    return c;
  }

  read(conn: number, txId: number, path: string): Uint8Array {
    const tx = this.tx(conn, txId);
    return this.get(conn, this.canonical(conn, path), 'r', tx).value;
  }

  directory(conn: number, txId: number, path: string): string[] {
    const tx = this.tx(conn, txId);
    return [...this.get(conn, this.canonical(conn, path), 'r', tx).children];
  }

  getPerms(conn: number, txId: number, path: string): XsPerm[] {
    const tx = this.tx(conn, txId);
    return this.get(conn, this.canonical(conn, path), 'r', tx).perms.map((p) => ({ ...p }));
  }

  /** create_node: missing parents are created with the parent's perms, owner the writer. */
  private create(conn: number, path: string, value: Uint8Array, tx: Tx | null): void {
    const chain: string[] = [];
    let p = path;
    let parent: Node | undefined;
    for (;;) {
      chain.unshift(p);
      p = parentOf(p);
      parent = this.lookup(p, tx);
      if (parent) break;
    }
    if (!this.allowed(conn, parent, 'w')) throw new XsError('EACCES');
    if (!this.privileged(conn) && this.owned(conn, tx) + chain.length > XS_QUOTA.entries) throw new XsError('ENOSPC');
    // create_node writes every new record and the parent's: any too large and none is kept.
    const base = (x: string) => x.slice(x.lastIndexOf('/') + 1);
    this.checkRecord(conn, { ...parent, children: [...parent.children, base(chain[0])] });
    // Each new node takes its parent's permissions (owner changed), so as many as the parent's.
    chain.forEach((c, i) => this.checkRecord(conn, {
      value: c === path ? value : new Uint8Array(0), children: i + 1 < chain.length ? [base(chain[i + 1])] : [], perms: parent.perms,
    }));
    let par = p;
    for (const c of chain) {
      const pn = this.lookup(par, tx)!;
      const perms = pn.perms.map((x) => ({ ...x }));
      if (!this.privileged(conn)) perms[0] = { p: perms[0].p, id: conn };
      this.store(par, { ...pn, children: [...pn.children, c.slice(c.lastIndexOf('/') + 1)] }, tx);
      this.store(c, { value: c === path ? value : new Uint8Array(0), children: [], perms, gen: 0 }, tx);
      this.fire(c, tx);
      par = c;
    }
  }

  write(conn: number, txId: number, path: string, value: Uint8Array): void {
    const tx = this.tx(conn, txId);
    const abs = this.canonical(conn, path);
    if (abs.startsWith('@')) throw new XsError('EINVAL');
    const n = this.lookup(abs, tx);
    if (!n) return this.create(conn, abs, value, tx);
    if (!this.allowed(conn, n, 'w')) throw new XsError('EACCES');
    this.checkRecord(conn, { ...n, value });
    this.store(abs, { ...n, value: value.slice() }, tx);
    this.fire(abs, tx);
  }

  mkdir(conn: number, txId: number, path: string): void {
    const tx = this.tx(conn, txId);
    const abs = this.canonical(conn, path);
    if (abs.startsWith('@')) throw new XsError('EINVAL');
    const n = this.lookup(abs, tx);
    if (n) { if (!this.allowed(conn, n, 'w')) throw new XsError('EACCES'); return; }
    this.create(conn, abs, new Uint8Array(0), tx);
  }

  /** do_rm: a missing node whose parent exists is fine; "/" is EINVAL. */
  rm(conn: number, txId: number, path: string): void {
    const tx = this.tx(conn, txId);
    const abs = this.canonical(conn, path);
    if (abs.startsWith('@')) throw new XsError('EINVAL');
    let n: Node;
    try {
      n = this.get(conn, abs, 'w', tx);
    } catch (e) {
      if (e instanceof XsError && e.errno === 'ENOENT' && this.lookup(parentOf(abs), tx)) return;
      throw e;
    }
    if (abs === '/') throw new XsError('EINVAL');
    const par = parentOf(abs);
    const pn = this.lookup(par, tx)!;
    if (!this.allowed(conn, pn, 'w')) throw new XsError('EACCES');
    const name = abs.slice(abs.lastIndexOf('/') + 1);
    this.store(par, { ...pn, children: pn.children.filter((c) => c !== name) }, tx);
    const drop = (p: string, node: Node) => {
      for (const c of node.children) { const cp = `${p}/${c}`; const cn = this.lookup(cp, tx); if (cn) drop(cp, cn); }
      this.store(p, null, tx);
    };
    drop(abs, n);
    this.fire(abs, tx, true);
  }

  setPerms(conn: number, txId: number, path: string, perms: XsPerm[]): void {
    const tx = this.tx(conn, txId);
    if (perms.length === 0) throw new XsError('EINVAL');
    // domain_alloc_permrefs (xenstored_domain.c, Xen 4.17): an entry naming a domain that
    // does not exist is marked XS_PERM_IGNORE, and an ignored owner is ENOENT
    // (do_set_perms), before the node is even looked up. Other such entries stay, and
    // GET_PERMS shows them (Xen 4.17.7 answered "n1 r4321 r0").
    if (!this.domains.has(perms[0].id)) throw new XsError('ENOENT');
    const abs = this.canonical(conn, path);
    if (abs.startsWith('@')) throw new XsError('EINVAL');
    const n = this.get(conn, abs, 'w', tx);
    if (!this.privileged(conn) && n.perms[0].id !== conn) throw new XsError('EACCES');
    if (!this.privileged(conn) && perms[0].id !== n.perms[0].id) throw new XsError('EPERM');
    this.checkRecord(conn, { ...n, perms });
    this.store(abs, { ...n, perms: perms.map((p) => ({ ...p })) }, tx);
    this.fire(abs, tx);
  }

  startTransaction(conn: number, txId: number): number {
    this.tx(conn, txId);
    if (txId !== 0) throw new XsError('EBUSY');
    // xenstored_transaction.c checks `transaction_started > quota_max_transaction` before
    // counting the new one: a domain gets quota + 1 transactions.
    const open = [...this.txs.values()].filter((t) => t.conn === conn).length;
    if (!this.privileged(conn) && open > XS_QUOTA.transactions) throw new XsError('ENOSPC');
    const id = this.nextTx++;
    this.txs.set(id, { id, conn, nodes: new Map(), seen: new Map() });
    return id;
  }

  /** Commit (true) or abort; EAGAIN when a node the transaction touched changed meanwhile. */
  endTransaction(conn: number, txId: number, commit: boolean): void {
    const tx = this.tx(conn, txId);
    if (!tx) throw new XsError('ENOENT');
    this.txs.delete(txId);
    if (!commit) return;
    for (const [p, g] of tx.seen) {
      const n = this.nodes.get(p);
      if ((n ? n.gen : -1) !== g) throw new XsError('EAGAIN');
    }
    for (const [p, n] of tx.nodes) this.store(p, n ? { ...n } : null, null);
    for (const [p] of tx.nodes) this.fire(p, null);
  }

  watch(conn: number, path: string, token: string): void {
    const rel = !path.startsWith('/') && !path.startsWith('@');
    const abs = this.canonical(conn, path);
    if (this.watches.some((w) => w.conn === conn && w.token === token && w.path === abs)) throw new XsError('EEXIST');
    // xenstored_watch.c: `domain_watch(conn) > quota_nb_watch_per_domain`, checked before adding.
    if (!this.privileged(conn) && this.watches.filter((w) => w.conn === conn).length > XS_QUOTA.watches) throw new XsError('E2BIG');
    this.watches.push({ conn, path: abs, token, rel });
    this.events.push({ conn, path, token });
  }

  unwatch(conn: number, path: string, token: string): void {
    const abs = this.canonical(conn, path);
    const i = this.watches.findIndex((w) => w.conn === conn && w.token === token && w.path === abs);
    if (i < 0) throw new XsError('ENOENT');
    this.watches.splice(i, 1);
  }

  /** fire_watches: a change to `path` fires watches on it and its ancestors; a removal also
   *  fires watches below it. Changes inside a transaction fire at commit. */
  private fire(path: string, tx: Tx | null, removed = false): void {
    if (tx) return;
    for (const w of this.watches) {
      const on = path === w.path || path.startsWith(w.path === '/' ? '/' : `${w.path}/`);
      const below = removed && w.path.startsWith(`${path}/`);
      if (!on && !below) continue;
      const n = this.nodes.get(below ? w.path : path) ?? this.nodes.get(parentOf(path));
      if (n && !this.allowed(w.conn, n, 'r')) continue;
      const ev = below ? w.path : path;
      const pre = `/local/domain/${w.conn}/`;
      this.events.push({ conn: w.conn, path: w.rel && ev.startsWith(pre) ? ev.slice(pre.length) : ev, token: w.token });
    }
  }

  /** process_message looks the transaction up first: an unknown tx_id is ENOENT for every type. */
  checkTx(conn: number, txId: number): void { this.tx(conn, txId); }

  /** Every node path, sorted (for tests). */
  paths(): string[] { return [...this.nodes.keys()].sort(); }
}
