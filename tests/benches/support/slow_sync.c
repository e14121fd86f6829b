// LD_PRELOAD shim for the benches: every fsync, fdatasync and msync(MS_SYNC) first sleeps
// SLOW_SYNC_US microseconds (default 7000), modelling a disk whose flush takes that long: an SD
// card or eMMC on a gateway, or the machine the issues' targets were measured on (~150 fsyncs/s).
// The test VM's fsync takes 0.2-0.4 ms, where the loopback round trip, not the disk, bounds
// several of the issues' ratios. LMDB calls these through libc, so the shim covers the broker
// (a child process inherits LD_PRELOAD) and the benches' raw heed baselines alike.
//
//   gcc -O2 -shared -fPIC -o /tmp/slow_sync.so tests/benches/support/slow_sync.c -ldl
//   SLOW_SYNC_US=7000 LD_PRELOAD=/tmp/slow_sync.so HW_KAFKA_BENCH=one,latency \
//     HW_BENCH_SCALE=0.2 cargo bench -p headwater-tests --bench kafka
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void pause_for_flush(void) {
    const char *s = getenv("SLOW_SYNC_US");
    long us = s ? atol(s) : 7000;
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    nanosleep(&ts, NULL);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = dlsym(RTLD_NEXT, "fsync");
    pause_for_flush();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = dlsym(RTLD_NEXT, "fdatasync");
    pause_for_flush();
    return real(fd);
}

int msync(void *addr, size_t len, int flags) {
    static int (*real)(void *, size_t, int);
    if (!real) real = dlsym(RTLD_NEXT, "msync");
    if (flags & MS_SYNC) pause_for_flush();
    return real(addr, len, flags);
}
