/*
 * Baseline for bench/kvm-roundtrip.mjs: the cost of one guest I/O-port exit
 * served by a minimal C VMM, with the same guest the addon benchmark runs.
 *
 * The guest is two real-mode instructions at 0x1000, `out %al,$0x10; jmp`,
 * so every KVM_RUN returns with KVM_EXIT_IO. Usage: kvm-roundtrip N
 * Prints one JSON line: {"exits":N,"ns":total,"nsPerExit":x}.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "kvm-roundtrip: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 100000;
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("open /dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");

  size_t mem_size = 0x10000;
  uint8_t *mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  static const uint8_t guest[] = {0xe6, 0x10, 0xeb, 0xfc}; /* out %al,$0x10; jmp back */
  memcpy(mem + 0x1000, guest, sizeof guest);
  struct kvm_userspace_memory_region region = {
      .slot = 0, .guest_phys_addr = 0, .memory_size = mem_size, .userspace_addr = (uintptr_t)mem};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");

  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_size < 0) die("KVM_GET_VCPU_MMAP_SIZE");
  struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");

  struct kvm_sregs sregs;
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs = {.rip = 0x1000, .rflags = 2};
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

  /* warm up */
  for (int i = 0; i < 1000; i++)
    if (ioctl(vcpu, KVM_RUN, 0) < 0 || run->exit_reason != KVM_EXIT_IO) die("warm-up KVM_RUN");

  int64_t t0 = now_ns();
  for (long i = 0; i < n; i++) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
    if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0x10) {
      fprintf(stderr, "kvm-roundtrip: unexpected exit %u\n", run->exit_reason);
      return 1;
    }
  }
  int64_t ns = now_ns() - t0;
  printf("{\"exits\":%ld,\"ns\":%lld,\"nsPerExit\":%.1f}\n", n, (long long)ns, (double)ns / n);
  return 0;
}
