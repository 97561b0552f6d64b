/* bench/mvcc_put_threads.c - N C threads calling kvt_mvcc_put on one durable handle: the
 * write groups and the log's group fsync without Python in the way.
 *
 *   make -C native && gcc -O2 -Inative/include bench/mvcc_put_threads.c \
 *       native/build/libkvt.a -pthread -o /tmp/mvcc_put_threads
 *   mkdir /tmp/d && /usr/bin/time -f "%U user %S sys %w voluntary cs" \
 *       /tmp/mvcc_put_threads /tmp/d 16
 *
 * 40,000 puts in all (16 B keys, 100 B values, every key new); prints puts/s, puts per
 * fsync and the time per fsync cycle. The directory must be empty.
 */
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <time.h>
#include "kvtrees.h"
#include "kvt_mvcc.h"

#define TOTAL_PUTS 40000

static kvt_mvcc *handle;
static int per_thread;

static void *writer(void *arg) {
    long t = (long)arg;
    char k[32], v[100] = {0};
    kvt_mvcc_put_result res;
    for (int i = 0; i < per_thread; i++) {
        int kl = snprintf(k, sizeof k, "k%07ld-%07d", t, i);
        int rc = kvt_mvcc_put(handle, (uint8_t *)k, (size_t)kl, (uint8_t *)v, sizeof v, 0, 0,
                              NULL, 0, &res);
        if (rc < 0) {
            fprintf(stderr, "put: %s: %s\n", kvt_strerror(rc), kvt_errmsg());
            exit(1);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s EMPTY_DIR THREADS\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[2]);
    if (threads < 1 || threads > 256) return 2;
    per_thread = TOTAL_PUTS / threads;
    kvt_options o;
    kvt_options_init(&o);
    o.sync_mode = 2;                   /* the MVCC handle fsyncs itself, as the store does */
    kvt_db *db;
    int rc = kvt_open(argv[1], &o, &db);
    if (rc == KVT_OK) rc = kvt_mvcc_open(db, 0, 1, &handle);
    if (rc < 0) {
        fprintf(stderr, "open: %s: %s\n", kvt_strerror(rc), kvt_errmsg());
        return 1;
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pthread_t th[256];
    for (long i = 0; i < threads; i++) pthread_create(&th[i], NULL, writer, (void *)i);
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    kvt_stats st;
    kvt_get_stats(db, &st);
    double puts = (double)per_thread * threads;
    printf("%d threads: %.0f puts/s, %.1f puts per fsync, %.0f us per fsync cycle\n", threads,
           puts / s, puts / (double)st.fsyncs, s * 1e6 / (double)st.fsyncs);
    kvt_mvcc_close(handle);
    kvt_mvcc_free(handle);
    return kvt_close(db) < 0;
}
