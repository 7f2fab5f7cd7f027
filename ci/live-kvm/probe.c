/*
 * xconf-kvm-probe: runs inside the live-KVM guest (linked statically).
 *
 *   xconf-kvm-probe          print "KVM_API_VERSION=12 KVM_CAP_XEN_HVM=0x3f"
 *   xconf-kvm-probe drain    wait until the console (stdout) has sent its output
 *
 * Exit status: 0 on success, 1 when /dev/kvm cannot be opened or queried.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "drain") == 0) {
		fflush(stdout);
		return tcdrain(STDOUT_FILENO) == 0 ? 0 : 1;
	}

	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		printf("error=open(/dev/kvm):%s\n", strerror(errno));
		return 1;
	}
	int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
	int xen = ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_XEN_HVM);
	if (api < 0 || xen < 0) {
		printf("error=ioctl:%s\n", strerror(errno));
		return 1;
	}
	printf("KVM_API_VERSION=%d KVM_CAP_XEN_HVM=0x%x\n", api, (unsigned)xen);
	return 0;
}
