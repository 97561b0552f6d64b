/* mapguard.c - a SIGBUS on the read map becomes an error, not a dead process.
 *
 * Touching a mapped page the kernel cannot supply (the data file was truncated under
 * the mapping, or the disk failed to read it) raises SIGBUS in the thread touching it.
 * Every read mapping is registered here; a process-wide SIGBUS handler that finds the
 * faulting address in a registered range replaces the range from the faulting OS page
 * to its end by anonymous zero pages (so the instruction that faulted, and every later
 * access, reads zeros instead of faulting again) and counts a fault for that range.
 * The pager then never serves from that mapping again, and every operation that was
 * running while the count moved fails with KVT_EIO (kvt_pager_map_guard): zeros read
 * through the map never reach a caller or a written page. Signals outside registered
 * ranges go to the handler that was installed before ours (Python's faulthandler,
 * a sanitizer, or the default action).
 *
 * Why patch-and-count rather than sigsetjmp/siglongjmp: a jump out of engine code
 * would leave pins, scratch buffers and the pool mutex in unknown states; reading zeros
 * until the operation returns keeps every C invariant and the failure is reported by
 * the operation's own return code. Engine code is bounds-checked against damaged
 * pages, so zeros only make it fail sooner (KVT_ECORRUPT, mapped to KVT_EIO).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#include "pager_int.h"

#define GUARD_SLOTS 256

typedef struct guard_slot {
    _Atomic uintptr_t lo, hi;          /* [lo, hi) mapped; hi 0: free slot */
    atomic_uint_fast64_t faults;
} guard_slot;

static guard_slot slots[GUARD_SLOTS];
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction prev_action;   /* the handler before ours, for other faults */
static uintptr_t os_page = 4096;

static _Thread_local int passing;       /* a chained handler that re-raises to us */

static void pass_on(int sig, siginfo_t *si, void *uc) {
    if (passing) prev_action.sa_handler = SIG_DFL;   /* loop: fall back to the default */
    passing = 1;
    if ((prev_action.sa_flags & SA_SIGINFO) && prev_action.sa_handler != SIG_DFL) {
        if (prev_action.sa_sigaction) prev_action.sa_sigaction(sig, si, uc);
        passing = 0;
        return;
    }
    if (prev_action.sa_handler == SIG_DFL || prev_action.sa_handler == SIG_IGN) {
        /* Default action: restore it and return; the faulting access repeats and the
         * kernel delivers SIGBUS with the default disposition (the usual crash). */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        (void)sigaction(sig, &dfl, NULL);
        if (si->si_code <= 0) (void)raise(sig);   /* sent, not a fault: re-send it */
        return;
    }
    prev_action.sa_handler(sig);
    passing = 0;
}

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
    uintptr_t a = (uintptr_t)si->si_addr;
    if (si->si_code > 0) {                       /* a real fault: si_addr is meaningful */
        for (int i = 0; i < GUARD_SLOTS; i++) {
            uintptr_t lo = atomic_load(&slots[i].lo), hi = atomic_load(&slots[i].hi);
            if (!hi || a < lo || a >= hi) continue;
            int saved = errno;
            uintptr_t from = a & ~(os_page - 1);
            void *r = mmap((void *)from, hi - from, PROT_READ,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            errno = saved;
            if (r == MAP_FAILED) break;             /* cannot patch: not survivable */
            atomic_fetch_add(&slots[i].faults, 1);
            return;
        }
    }
    pass_on(sig, si, uc);
}

/* Ours must be the current handler: install it (again) when another one replaced it,
 * keeping that one for faults outside our ranges. Caller holds reg_mu. */
static int ensure_handler(void) {
    struct sigaction cur;
    if (sigaction(SIGBUS, NULL, &cur) != 0)
        return kvt_seterr(KVT_EIO, "pager: sigaction(SIGBUS): %s", strerror(errno));
    if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_sigbus) return KVT_OK;
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_sigaction = on_sigbus;
    act.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&act.sa_mask);
    prev_action = cur;
    if (sigaction(SIGBUS, &act, NULL) != 0)
        return kvt_seterr(KVT_EIO, "pager: sigaction(SIGBUS): %s", strerror(errno));
    return KVT_OK;
}

int mapguard_add(void *addr, uint64_t len, int *slot) {
    *slot = -1;
    pthread_mutex_lock(&reg_mu);
    long ps = sysconf(_SC_PAGESIZE);
    if (ps > 0) os_page = (uintptr_t)ps;
    int rc = ensure_handler();
    for (int i = 0; rc == KVT_OK && i < GUARD_SLOTS; i++) {
        if (atomic_load(&slots[i].hi)) continue;
        atomic_store(&slots[i].faults, 0);
        atomic_store(&slots[i].lo, (uintptr_t)addr);
        atomic_store(&slots[i].hi, (uintptr_t)addr + len);
        *slot = i;
        break;
    }
    pthread_mutex_unlock(&reg_mu);
    KVT_TRY(rc);
    if (*slot < 0)
        return kvt_seterr(KVT_ENOMEM, "pager: more than %d read maps open", GUARD_SLOTS);
    return KVT_OK;
}

void mapguard_remove(int slot) {
    if (slot < 0 || slot >= GUARD_SLOTS) return;
    pthread_mutex_lock(&reg_mu);
    atomic_store(&slots[slot].hi, 0);
    atomic_store(&slots[slot].lo, 0);
    pthread_mutex_unlock(&reg_mu);
}

uint64_t mapguard_faults(int slot) {
    if (slot < 0 || slot >= GUARD_SLOTS) return 0;
    return atomic_load_explicit(&slots[slot].faults, memory_order_acquire);
}

/* Test hook: make the next touch of [addr, addr+len) (OS-page aligned) raise a real
 * SIGBUS, as a media error would, by mapping there a file page past the end of an
 * empty in-memory file. */
int mapguard_inject(void *addr, uint64_t len) {
    if ((uintptr_t)addr % os_page || len == 0)
        return kvt_seterr(KVT_EINVAL, "pager: fault injection at unaligned %p", addr);
    int fd = memfd_create("kvt-map-fault", 0);
    if (fd < 0) return kvt_seterr(KVT_EIO, "pager: memfd_create: %s", strerror(errno));
    void *r = mmap(addr, (size_t)len, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
    int err = errno;
    close(fd);                                   /* the mapping keeps the file */
    if (r == MAP_FAILED) return kvt_seterr(KVT_EIO, "pager: fault mapping: %s", strerror(err));
    return KVT_OK;
}
