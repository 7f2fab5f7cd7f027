// Xen's errno values, as guests see them negated in rax.
// Source: xen/include/public/errno.h (same numbering as x86 Linux).

export const XEN_ERRNO = {
  EPERM: 1, ENOENT: 2, ESRCH: 3, EIO: 5, ENXIO: 6, E2BIG: 7, ENOEXEC: 8, EBADF: 9,
  ECHILD: 10, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14, EBUSY: 16, EEXIST: 17,
  EXDEV: 18, ENODEV: 19, ENOTDIR: 20, EISDIR: 21, EINVAL: 22, ENFILE: 23, EMFILE: 24,
  ENOSPC: 28, EROFS: 30, EMLINK: 31, EDOM: 33, ERANGE: 34, EDEADLK: 35,
  ENAMETOOLONG: 36, ENOLCK: 37, ENOSYS: 38, ENOTEMPTY: 39, ENODATA: 61, ETIME: 62,
  EBADMSG: 74, EOVERFLOW: 75, EILSEQ: 84, ENOTSOCK: 88, EMSGSIZE: 90, EOPNOTSUPP: 95,
  EADDRINUSE: 98, EADDRNOTAVAIL: 99, ENOBUFS: 105, EISCONN: 106, ENOTCONN: 107,
  ETIMEDOUT: 110, ECONNREFUSED: 111,
} as const;

export type XenErrno = keyof typeof XEN_ERRNO;

/** Negated errno as a hypercall return value. */
export function err(name: XenErrno): number {
  return -XEN_ERRNO[name];
}

const BY_VALUE = new Map<number, string>(Object.entries(XEN_ERRNO).map(([k, v]) => [v, k]));

/** "-22 (-EINVAL)" for negative values that are errnos, the plain number otherwise. */
export function describeRet(v: bigint | number): string {
  const n = typeof v === 'bigint' ? v : BigInt(v);
  if (n < 0n && n >= -200n) {
    const name = BY_VALUE.get(Number(-n));
    if (name) return `${n} (-${name})`;
  }
  if (n > 0xffffn) return `0x${n.toString(16)}`;
  return n.toString();
}
