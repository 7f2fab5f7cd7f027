// Paged, sparse guest-physical memory. Pages are allocated on first write and
// read back as zeros before that, like freshly populated guest RAM.
// Identity paging is assumed for guest handles: a guest virtual address equals
// its physical address (the tiny guest on the kvm target runs identity-mapped).

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;

/** Raised for an access outside guest RAM; hypercall handlers turn it into -EFAULT. */
export class GuestFault extends Error {
  override name = 'GuestFault';
  constructor(readonly gpa: number, readonly len: number) {
    super(`guest access outside RAM: gpa 0x${gpa.toString(16)} len ${len}`);
  }
}

/** One store as the model makes it: used by tests that replay intermediate memory states. */
export interface StoreRecord {
  gpa: number;
  bytes: Uint8Array;
}

/** What a guest reads from a frame with nothing behind it (an HVM access to a p2m hole reads ~0). */
const HOLE_PAGE = new Uint8Array(PAGE_SIZE).fill(0xff);

/**
 * A fresh zeroed page. Pages are carved out of larger buffers, 16 at a time: one
 * allocation of zeroed memory instead of one per page (sequences populate many pages).
 */
const CHUNK_PAGES = 16;
let chunk: ArrayBuffer | undefined;
let chunkUsed = CHUNK_PAGES;
function newPage(): Uint8Array {
  if (chunkUsed === CHUNK_PAGES) {
    chunk = new ArrayBuffer(CHUNK_PAGES * PAGE_SIZE);
    chunkUsed = 0;
  }
  return new Uint8Array(chunk!, PAGE_SIZE * chunkUsed++, PAGE_SIZE);
}

export class GuestMemory {
  private readonly pages = new Map<number, Uint8Array>();
  /** Frames with nothing behind them: reads give all-ones, writes are dropped. */
  private holes?: Set<number>;
  /** Observers of every store, in order (torn-read checks replay them). */
  private readonly observers: Array<(s: StoreRecord) => void> = [];
  /**
   * The pages here are the guest's memory: read() and write() are this class's own. A
   * subclass whose read or write goes elsewhere (the kvm target's VMM layer reads the VM's
   * memory, a shadow model the real guest's) gets no shortcut past them.
   */
  private readonly direct: boolean;

  constructor(readonly size: number) {
    if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0) {
      throw new RangeError(`guest memory size must be a positive multiple of ${PAGE_SIZE}`);
    }
    this.direct = this.read === GuestMemory.prototype.read && this.write === GuestMemory.prototype.write;
  }

  contains(gpa: number, len: number): boolean {
    return Number.isSafeInteger(gpa) && Number.isSafeInteger(len) && gpa >= 0 && len >= 0 && gpa + len <= this.size;
  }

  private check(gpa: number, len: number): void {
    if (!this.contains(gpa, len)) throw new GuestFault(gpa, len);
  }

  observe(fn: (s: StoreRecord) => void): () => void {
    this.observers.push(fn);
    return () => {
      const i = this.observers.indexOf(fn);
      if (i >= 0) this.observers.splice(i, 1);
    };
  }

  read(gpa: number, len: number): Uint8Array {
    this.check(gpa, len);
    const off0 = gpa & (PAGE_SIZE - 1);
    if (off0 + len <= PAGE_SIZE) {
      // Within one page (almost every access): one copy, no loop.
      const page = this.pages.get(gpa >>> PAGE_SHIFT);
      return page ? page.slice(off0, off0 + len) : new Uint8Array(len);
    }
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const a = gpa + done;
      const pfn = a >>> PAGE_SHIFT;
      const off = a & (PAGE_SIZE - 1);
      const n = Math.min(len - done, PAGE_SIZE - off);
      const page = this.pages.get(pfn);
      if (page) out.set(page.subarray(off, off + n), done);
      done += n;
    }
    return out;
  }

  /** The page a store to frame `pfn` goes to, made on first use (HOLE_PAGE for a hole: the store is dropped). */
  private pageToWrite(pfn: number): Uint8Array {
    let page = this.pages.get(pfn);
    if (!page) {
      page = newPage();
      this.pages.set(pfn, page);
    }
    return page;
  }

  write(gpa: number, bytes: Uint8Array): void {
    this.check(gpa, bytes.length);
    const off0 = gpa & (PAGE_SIZE - 1);
    if (off0 + bytes.length <= PAGE_SIZE) {
      // Within one page: store straight into it.
      const page = this.pageToWrite(gpa >>> PAGE_SHIFT);
      if (page === HOLE_PAGE) return;
      if (bytes.length <= 8) for (let i = 0; i < bytes.length; i++) page[off0 + i] = bytes[i];
      else page.set(bytes, off0);
      this.notify(gpa, bytes);
      return;
    }
    let done = 0;
    while (done < bytes.length) {
      const a = gpa + done;
      const pfn = a >>> PAGE_SHIFT;
      const off = a & (PAGE_SIZE - 1);
      const n = Math.min(bytes.length - done, PAGE_SIZE - off);
      const page = this.pageToWrite(pfn);
      if (page !== HOLE_PAGE) page.set(bytes.subarray(done, done + n), off);
      done += n;
    }
    this.notify(gpa, bytes);
  }

  private notify(gpa: number, bytes: Uint8Array): void {
    if (this.observers.length) {
      const rec = { gpa, bytes: bytes.slice() };
      for (const o of this.observers) o(rec);
    }
  }

  /**
   * Take the frame at pfn out of the guest's physmap, as Xen's guest_physmap_remove_page
   * does when XENMEM_add_to_physmap moves a Xen page (shared_info, a grant frame) away:
   * the guest then reads all-ones there and its writes go nowhere.
   */
  unmapFrame(pfn: number): void {
    (this.holes ??= new Set()).add(pfn);
    this.pages.set(pfn, HOLE_PAGE);
  }

  /** Put a frame (fresh zeroes) back at pfn if it was a hole. */
  mapFrame(pfn: number): void {
    if (!this.holes?.delete(pfn)) return;
    this.pages.delete(pfn);
  }

  isHole(pfn: number): boolean {
    return this.holes?.has(pfn) ?? false;
  }

  fill(gpa: number, len: number, value: number): void {
    this.write(gpa, new Uint8Array(len).fill(value));
  }

  /** Little-endian unsigned read of up to 4 bytes as a number. */
  private readN(gpa: number, size: 1 | 2 | 4): number {
    const off = gpa & (PAGE_SIZE - 1);
    if (this.direct && off + size <= PAGE_SIZE && gpa >= 0 && gpa + size <= this.size && Number.isSafeInteger(gpa)) {
      // Within one page of RAM (almost every access): straight from the page, no copy.
      const page = this.pages.get(gpa >>> PAGE_SHIFT);
      if (!page) return 0;
      if (size === 1) return page[off];
      if (size === 2) return page[off] | (page[off + 1] << 8);
      return (page[off] | (page[off + 1] << 8) | (page[off + 2] << 16) | (page[off + 3] << 24)) >>> 0;
    }
    const b = this.read(gpa, size);
    let n = 0;
    for (let i = size - 1; i >= 0; i--) n = n * 256 + b[i];
    return n;
  }

  readU(gpa: number, size: 1 | 2 | 4 | 8): bigint {
    if (size <= 4) return BigInt(this.readN(gpa, size as 1 | 2 | 4));
    const b = this.read(gpa, size);
    if (size <= 4) {
      let n = 0;
      for (let i = size - 1; i >= 0; i--) n = n * 256 + b[i];
      return BigInt(n);
    }
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    return v;
  }

  writeU(gpa: number, size: 1 | 2 | 4 | 8, value: bigint | number): void {
    if (size <= 4 && typeof value === 'number' && Number.isSafeInteger(value)) {
      // Small stores of plain numbers: the same bytes without BigInt arithmetic.
      let n = value >= 0 ? value % 2 ** (size * 8) : (2 ** (size * 8) + (value % 2 ** (size * 8))) % 2 ** (size * 8);
      const off = gpa & (PAGE_SIZE - 1);
      if (this.direct && off + size <= PAGE_SIZE && gpa >= 0 && gpa + size <= this.size && Number.isSafeInteger(gpa) && !this.observers.length) {
        // Within one page of RAM, nobody observing: the store write() makes, without the byte array.
        const page = this.pageToWrite(gpa >>> PAGE_SHIFT);
        if (page === HOLE_PAGE) return;
        for (let i = 0; i < size; i++) { page[off + i] = n & 0xff; n = Math.floor(n / 256); }
        return;
      }
      const b = new Uint8Array(size);
      for (let i = 0; i < size; i++) { b[i] = n & 0xff; n = Math.floor(n / 256); }
      this.write(gpa, b);
      return;
    }
    const b = new Uint8Array(size);
    let v = BigInt.asUintN(size * 8, BigInt(value));
    for (let i = 0; i < size; i++) {
      b[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    this.write(gpa, b);
  }

  u8(gpa: number): number { return this.readN(gpa, 1); }
  u16(gpa: number): number { return this.readN(gpa, 2); }
  u32(gpa: number): number { return this.readN(gpa, 4); }
  u64(gpa: number): bigint { return this.readU(gpa, 8); }
  setU8(gpa: number, v: number): void { this.writeU(gpa, 1, v); }
  setU16(gpa: number, v: number): void { this.writeU(gpa, 2, v); }
  setU32(gpa: number, v: number | bigint): void { this.writeU(gpa, 4, v); }
  setU64(gpa: number, v: number | bigint): void { this.writeU(gpa, 8, v); }

  /** Number of pages that have been written (memory actually backed). */
  get populatedPages(): number {
    return this.pages.size;
  }
}
