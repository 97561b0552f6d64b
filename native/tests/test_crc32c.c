/* test_crc32c.c - the hardware CRC32C paths (three interleaved streams, single stream)
 * against the portable table implementation, a known vector, and chaining. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kvt_util.h"

uint32_t kvt_crc32c_sw(uint32_t crc, const void *data, size_t n);   /* test hook */

static int fails;
#define CHECK(c, ...) do { if (!(c)) { fails++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
    printf(__VA_ARGS__); printf("\n"); } } while (0)

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)rng; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(void) {
    CHECK(kvt_crc32c(0, "123456789", 9) == 0xE3069283u, "check value %08x",
          kvt_crc32c(0, "123456789", 9));
    CHECK(kvt_crc32c_sw(0, "123456789", 9) == 0xE3069283u, "sw check value");
    CHECK(kvt_crc32c(0, "", 0) == 0, "empty");
    enum { MAX = 3 * 65536 + 77 };
    uint8_t *buf = malloc(MAX + 16);
    for (size_t i = 0; i < MAX + 16; i++) buf[i] = (uint8_t)rnd();
    /* every length around the block boundaries, at odd alignments */
    static const size_t edges[] = {0, 1, 7, 8, 9, 383, 384, 385, 767, 768, 4079, 4080, 4081,
                                   4092, 4096, 8160, 8161, 12240, 65536, MAX};
    for (size_t e = 0; e < sizeof edges / sizeof *edges; e++)
        for (size_t d = 0; d < 9 && edges[e] + d <= MAX; d++)
            for (size_t off = 0; off < 3; off++) {
                size_t n = edges[e] + d;
                uint32_t seed = rnd();
                uint32_t a = kvt_crc32c(seed, buf + off, n), b = kvt_crc32c_sw(seed, buf + off, n);
                CHECK(a == b, "len %zu off %zu: %08x vs %08x", n, off, a, b);
            }
    for (int i = 0; i < 2000; i++) {       /* random lengths, and chaining = whole */
        size_t n = rnd() % MAX, cut = n ? rnd() % n : 0, off = rnd() % 16;
        uint32_t whole = kvt_crc32c(0, buf + off, n);
        CHECK(whole == kvt_crc32c_sw(0, buf + off, n), "random len %zu", n);
        uint32_t part = kvt_crc32c(kvt_crc32c(0, buf + off, cut), buf + off + cut, n - cut);
        CHECK(part == whole, "chained len %zu cut %zu", n, cut);
    }
    /* a single flipped bit always changes a page checksum */
    uint32_t base = kvt_crc32c(0, buf, 4092);
    for (int bit = 0; bit < 4092 * 8; bit += 61) {
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        CHECK(kvt_crc32c(0, buf, 4092) != base, "bit %d flip undetected", bit);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    if (getenv("CRC_BENCH")) {
        volatile uint32_t sink = 0;
        double t = now();
        for (int i = 0; i < 200000; i++) sink += kvt_crc32c(0, buf + 4, 4092);
        double hw = (now() - t) / 200000;
        t = now();
        for (int i = 0; i < 20000; i++) sink += kvt_crc32c_sw(0, buf + 4, 4092);
        printf("4092-byte crc: %.0f ns (table: %.0f ns)\n", hw * 1e9, (now() - t) / 20000 * 1e9);
    }
    free(buf);
    printf("%s\n", fails ? "test_crc32c: FAILED" : "test_crc32c: ok");
    return fails != 0;
}
