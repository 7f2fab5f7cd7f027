/* xconf-xl-create: build a paused PVH domain with a chosen domain id, for the xen
 * target (harness/drivers/xen/xen-guest.ts). xl cannot choose the id (xl.cfg has no
 * domid; domain_create_info.domid is libxl's), yet cases name their domains (dom 1,
 * dom 2) in hypercall arguments. Built by ci/live-xen/run.sh against the libxen-dev
 * headers of the Xen it boots; runs in dom0.
 *
 *   xconf-xl-create NAME DOMID KERNEL MEMORY_MIB VCPUS [LIMIT=VALUE ...]
 *   LIMIT: max_grant_frames, max_maptrack_frames, max_grant_version, max_event_channels
 * Prints the new domain's id; exit 0, or 1 with libxl's error on stderr, 2 on bad usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libxl.h>
#include <libxl_utils.h>
#include <xentoollog.h>

static unsigned long num(const char *what, const char *s)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 0);
	if (errno || !*s || *end) {
		fprintf(stderr, "xconf-xl-create: %s '%s' is not a number\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: xconf-xl-create NAME DOMID KERNEL MEMORY_MIB VCPUS [LIMIT=VALUE ...]\n");
		return 2;
	}
	xentoollog_logger_stdiostream *log = xtl_createlogger_stdiostream(stderr, XTL_ERROR, 0);
	libxl_ctx *ctx;
	if (libxl_ctx_alloc(&ctx, LIBXL_VERSION, 0, (xentoollog_logger *)log)) {
		fprintf(stderr, "xconf-xl-create: libxl_ctx_alloc failed (is this dom0?)\n");
		return 1;
	}
	int vcpus = (int)num("VCPUS", argv[5]);
	libxl_domain_config dc;
	libxl_domain_config_init(&dc);
	dc.c_info.type = LIBXL_DOMAIN_TYPE_PVH;
	dc.c_info.name = strdup(argv[1]);
	dc.c_info.domid = (uint32_t)num("DOMID", argv[2]);
	libxl_domain_build_info_init_type(&dc.b_info, LIBXL_DOMAIN_TYPE_PVH);
	dc.b_info.kernel = strdup(argv[3]);
	dc.b_info.max_memkb = dc.b_info.target_memkb = num("MEMORY_MIB", argv[4]) * 1024;
	dc.b_info.max_vcpus = vcpus;
	if (libxl_cpu_bitmap_alloc(ctx, &dc.b_info.avail_vcpus, vcpus)) return 1;
	for (int i = 0; i < vcpus; i++) libxl_bitmap_set(&dc.b_info.avail_vcpus, i);
	for (int i = 6; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq) {
			fprintf(stderr, "xconf-xl-create: '%s' is not LIMIT=VALUE\n", argv[i]);
			return 2;
		}
		*eq = 0;
		unsigned long v = num(argv[i], eq + 1);
		if (!strcmp(argv[i], "max_grant_frames")) dc.b_info.max_grant_frames = v;
		else if (!strcmp(argv[i], "max_maptrack_frames")) dc.b_info.max_maptrack_frames = v;
		else if (!strcmp(argv[i], "max_grant_version")) dc.b_info.max_grant_version = (int)v;
		else if (!strcmp(argv[i], "max_event_channels")) dc.b_info.event_channels = v;
		else {
			fprintf(stderr, "xconf-xl-create: unknown limit %s\n", argv[i]);
			return 2;
		}
	}
	dc.on_poweroff = LIBXL_ACTION_ON_SHUTDOWN_DESTROY;
	dc.on_reboot = LIBXL_ACTION_ON_SHUTDOWN_DESTROY;
	dc.on_crash = LIBXL_ACTION_ON_SHUTDOWN_PRESERVE;
	/* libxl refuses an id destroyed in the last 60 s (LIBXL_DOMID_REUSE_TIMEOUT: a
	 * guard for backends that may still hold it). Each xconf case builds its domains
	 * with the same ids once the last case's are destroyed, and no backend holds
	 * them, so this test dom0 forgets the history. */
	if (unlink("/var/run/xen/domid-history") && errno != ENOENT) {
		perror("xconf-xl-create: removing /var/run/xen/domid-history");
		return 1;
	}
	uint32_t domid = 0;
	/* libxl_domain_create_new leaves the domain paused; xl unpauses it afterwards. */
	int rc = libxl_domain_create_new(ctx, &dc, &domid, NULL, NULL);
	if (rc) {
		fprintf(stderr, "xconf-xl-create: libxl_domain_create_new failed (%d)\n", rc);
		return 1;
	}
	printf("%u\n", domid);
	libxl_domain_config_dispose(&dc);
	libxl_ctx_free(ctx);
	xtl_logger_destroy((xentoollog_logger *)log);
	return 0;
}
